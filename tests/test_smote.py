"""SSIM-SMOTE: neighbour search inside the allowed set, interpolation, folds without leakage."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from landslide_dvc.core.errors import ParamError
from landslide_dvc.core.params import parse_section
from landslide_dvc.pipeline.h5data import Split, load_synthetic
from landslide_dvc.pipeline.smote import SmoteParams, nearest_neighbors, run_smote, smote_fold

PARAMS = dict(enabled=True, k=2, n_syn=3, alpha=2.0, beta=2.0, clip_low=0.1, clip_high=0.9, seed=0)


def make_split(n: int = 40, n_pos: int = 15, n_splits: int = 3, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, 12, 16, 16)).astype(np.float32)
    labels = np.zeros(n, np.int8)
    labels[:n_pos] = 1
    fold = (np.arange(n) % n_splits).astype(np.int8)
    channels = ["Red", "Green", "Blue", "NIR", "DVV", "DVH", "DDVV", "DDVH", "AVV", "AVH", "ADVV", "ADVH"]
    attrs = {"n_splits": n_splits, "center": np.zeros(12), "scale": np.ones(12)}
    return Split(images, [f"ID_{i:03d}" for i in range(n)], channels, labels, fold, attrs)


def test_nearest_neighbors_stay_in_members_and_skip_self() -> None:
    sim = np.array(
        [[1.0, 0.9, 0.8, 0.95], [0.9, 1.0, 0.7, 0.2], [0.8, 0.7, 1.0, 0.1], [0.95, 0.2, 0.1, 1.0]]
    )
    members = np.array([0, 1, 2])  # image 3 is in the validation fold
    nn = nearest_neighbors(sim, members, k=2)
    assert nn.tolist() == [[1, 2], [0, 2], [0, 1]]
    with pytest.raises(ParamError, match="smote.k=3 needs at least 4"):
        nearest_neighbors(sim, members, k=3)


def test_smote_fold_interpolates_with_bounded_lambda() -> None:
    split = make_split()
    images = split.images[:15]
    ids = split.ids[:15]
    sim = np.corrcoef(images.reshape(15, -1))
    anchors = np.arange(10)
    params = SmoteParams(**PARAMS)
    out = smote_fold(images, ids, sim, anchors, params, np.random.default_rng(1))
    assert len(out) == 10 * 3 and out.images.shape == (30, 12, 16, 16)
    assert np.all(out.lam >= 0.1) and np.all(out.lam <= 0.9)
    allowed = {ids[i] for i in anchors}
    index = {sample_id: i for i, sample_id in enumerate(ids)}
    for j in range(len(out)):
        assert out.anchor_id[j] in allowed and out.neighbor_id[j] in allowed
        assert out.anchor_id[j] != out.neighbor_id[j]
        a, b = images[index[out.anchor_id[j]]], images[index[out.neighbor_id[j]]]
        np.testing.assert_allclose(out.images[j], out.lam[j] * a + (1 - out.lam[j]) * b, rtol=1e-5, atol=1e-5)
    # the neighbour is one of the anchor's k most similar allowed images
    nn = nearest_neighbors(sim, anchors, 2)
    for j in range(len(out)):
        assert index[out.neighbor_id[j]] in nn[index[out.anchor_id[j]]]


def test_beta_clip_edge_cases() -> None:
    split = make_split()
    images, ids = split.images[:15], split.ids[:15]
    sim = np.corrcoef(images.reshape(15, -1))
    u_shaped = SmoteParams(**{**PARAMS, "alpha": 0.05, "beta": 0.05, "n_syn": 20})
    out = smote_fold(images, ids, sim, np.arange(15), u_shaped, np.random.default_rng(0))
    at_bounds = np.isclose(out.lam, 0.1) | np.isclose(out.lam, 0.9)
    assert at_bounds.mean() > 0.8  # Beta(0.05, 0.05) piles up near 0 and 1: clipped
    fixed = SmoteParams(**{**PARAMS, "clip_low": 0.3, "clip_high": 0.3})
    out = smote_fold(images, ids, sim, np.arange(15), fixed, np.random.default_rng(0))
    np.testing.assert_allclose(out.lam, 0.3)


def test_run_smote_per_fold_without_leakage(tmp_path: Path) -> None:
    split = make_split()
    params = SmoteParams(**PARAMS)
    counts = run_smote(split, params, tmp_path / "s.h5", tmp_path / "fig.png", tmp_path / "counts.json")
    fold_of = dict(zip(split.ids, split.fold.tolist()))
    positives_outside = [int(np.sum((split.labels == 1) & (split.fold != k))) for k in range(3)]
    assert counts == [n * params.n_syn for n in positives_outside]
    for k in range(3):
        synthetic = load_synthetic(tmp_path / "s.h5", k)
        assert len(synthetic) == counts[k]
        assert all(fold_of[i] != k for i in synthetic.anchor_id + synthetic.neighbor_id)
        assert all(split.labels[split.ids.index(i)] == 1 for i in synthetic.anchor_id + synthetic.neighbor_id)
    with h5py.File(tmp_path / "s.h5") as h5:
        assert h5.attrs["k"] == 2 and h5.attrs["n_splits"] == 3
    rows = json.loads((tmp_path / "counts.json").read_text())
    assert {"group": "fold 0: landslide + SMOTE", "images": positives_outside[0] + counts[0]} in rows
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_smote_is_deterministic_and_seeded(tmp_path: Path) -> None:
    split = make_split()
    run_smote(split, SmoteParams(**PARAMS), tmp_path / "a.h5", tmp_path / "a.png", tmp_path / "a.json")
    run_smote(split, SmoteParams(**PARAMS), tmp_path / "b.h5", tmp_path / "b.png", tmp_path / "b.json")
    run_smote(split, SmoteParams(**{**PARAMS, "seed": 1}), tmp_path / "c.h5", tmp_path / "c.png", tmp_path / "c.json")
    a, b, c = (load_synthetic(tmp_path / f"{x}.h5", 1) for x in "abc")
    np.testing.assert_array_equal(a.images, b.images)
    assert a.anchor_id == b.anchor_id and a.neighbor_id == b.neighbor_id
    assert not np.array_equal(a.lam, c.lam)


def test_disabled_smote_gives_empty_sets(tmp_path: Path) -> None:
    split = make_split()
    counts = run_smote(split, SmoteParams(**{**PARAMS, "enabled": False}), tmp_path / "s.h5", tmp_path / "f.png", tmp_path / "c.json")
    assert counts == [0, 0, 0]
    synthetic = load_synthetic(tmp_path / "s.h5", 2)
    assert len(synthetic) == 0 and synthetic.images.shape == (0, 12, 16, 16)


def test_k_larger_than_landslides_in_a_fold(tmp_path: Path) -> None:
    split = make_split(n=30, n_pos=6)
    with pytest.raises(ParamError, match="smote.k=5 needs at least 6 landslide images outside fold"):
        run_smote(split, SmoteParams(**{**PARAMS, "k": 5}), tmp_path / "s.h5", tmp_path / "f.png", tmp_path / "c.json")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"k": 0}, "smote.k=0 must be >= 1"),
        ({"alpha": 0.0}, "smote.alpha=0.0 must be > 0"),
        ({"beta": -1.0}, "smote.beta=-1.0 must be > 0"),
        ({"clip_low": 0.8, "clip_high": 0.2}, "must satisfy 0 <= clip_low <= clip_high <= 1"),
        ({"n_syn": 0}, "smote.n_syn=0 must be >= 1"),
        ({"k": 2.5}, "smote.k=2.5 has the wrong type"),
    ],
)
def test_bad_smote_params(change: dict, message: str) -> None:
    with pytest.raises(ParamError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_section({**PARAMS, **change}, SmoteParams, "smote")
