"""Normalisation maths, folds and the HDF5 layout written by `normalize`."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import make_zindi

from landslide.channels import channel_names
from landslide.errors import DataError
from landslide.normalize import (
    FoldsParams,
    NormalizeParams,
    apply_statistics,
    assign_folds,
    fit_statistics,
    run_normalize,
)


def test_standard_statistics_match_numpy() -> None:
    rng = np.random.default_rng(1)
    images = rng.normal(3.0, 2.0, size=(7, 4, 9, 9)).astype(np.float32)
    images[:, 2] = 5.0  # a constant channel must not divide by zero
    center, scale = fit_statistics(images, "standard")
    np.testing.assert_allclose(center, images.transpose(1, 0, 2, 3).reshape(4, -1).astype(np.float64).mean(1), rtol=1e-6)
    expected_std = images.transpose(1, 0, 2, 3).reshape(4, -1).astype(np.float64).std(1)
    expected_std[2] = 1.0
    np.testing.assert_allclose(scale, expected_std, rtol=1e-6)
    out = apply_statistics(images.copy(), center, scale)
    assert abs(out[:, 0].mean()) < 1e-5 and abs(out[:, 0].std() - 1) < 1e-4
    assert np.all(out[:, 2] == 0)


def test_robust_statistics_match_numpy() -> None:
    rng = np.random.default_rng(2)
    images = rng.standard_cauchy(size=(5, 3, 8, 8)).astype(np.float32)
    center, scale = fit_statistics(images, "robust")
    for c in range(3):
        values = images[:, c].ravel()
        q25, q50, q75 = np.percentile(values, [25, 50, 75])
        assert center[c] == pytest.approx(q50)
        assert scale[c] == pytest.approx(q75 - q25)


def test_folds_are_stratified_shuffled_and_seeded() -> None:
    labels = np.array([1] * 20 + [0] * 80, dtype=np.int8)
    fold = assign_folds(labels, 5, seed=3)
    assert sorted(np.unique(fold)) == [0, 1, 2, 3, 4]
    for k in range(5):
        assert (labels[fold == k] == 1).sum() == 4 and (fold == k).sum() == 20
    np.testing.assert_array_equal(fold, assign_folds(labels, 5, seed=3))
    assert not np.array_equal(fold, assign_folds(labels, 5, seed=4))
    assert not np.array_equal(fold[:20], np.sort(fold[:20]))  # shuffled, not blocks


def test_folds_need_enough_images_per_class() -> None:
    with pytest.raises(DataError, match="at least folds.n_splits=5"):
        assign_folds(np.array([1, 1, 0, 0, 0, 0, 0], dtype=np.int8), 5, seed=0)


@pytest.mark.parametrize("channels", [12, 20, 28])
@pytest.mark.parametrize("method", ["standard", "robust"])
def test_run_normalize_writes_splits(tmp_path: Path, channels: int, method: str) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root, n_train=20, n_test=6, n_pos=6)
    out = tmp_path / "out"
    run_normalize(root, NormalizeParams(method, channels), FoldsParams(3, 0), out / "train.h5", out / "test.h5", out / "answers.csv")
    with h5py.File(out / "train.h5") as h5:
        images = h5["images"][()]
        assert images.shape == (20, channels, 64, 64) and images.dtype == np.float32
        assert [s.decode() for s in h5["ids"][()]] == info["train_ids"]
        np.testing.assert_array_equal(h5["labels"][()], info["labels"])
        assert sorted(np.unique(h5["fold"][()])) == [0, 1, 2]
        assert list(h5.attrs["channels"]) == channel_names(channels)
        assert h5.attrs["method"] == method
        center, scale = h5.attrs["center"], h5.attrs["scale"]
        # the stored statistics reproduce the stored images from the raw patches
        raw = info["arrays"][info["train_ids"][0]].transpose(2, 0, 1)
        np.testing.assert_allclose(images[0, :12], (raw - center[:12, None, None]) / scale[:12, None, None], atol=1e-4)
    with h5py.File(out / "test.h5") as h5:
        assert h5["images"].shape == (6, channels, 64, 64)
        assert "labels" not in h5  # answers never enter the test split
        assert [s.decode() for s in h5["submission_ids"][()]] == list(reversed(info["test_ids"]))
        assert list(h5.attrs["submission_columns"]) == ["ID", "Target"]
        np.testing.assert_allclose(h5.attrs["center"], center)
    with (out / "answers.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["ID"] for r in rows] == info["test_ids"]
    assert [int(r["label"]) for r in rows] == list(info["test_labels"])


def test_statistics_come_from_training_images_only(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    make_zindi(root, n_train=10, n_test=4, n_pos=5)
    # shift every test patch: training statistics must not move
    for path in (root / "test_data").glob("*.npy"):
        np.save(path, np.load(path) + 100.0)
    out = tmp_path / "out"
    run_normalize(root, NormalizeParams("standard", 12), FoldsParams(2, 0), out / "a.h5", out / "b.h5", out / "c.csv")
    with h5py.File(out / "a.h5") as train, h5py.File(out / "b.h5") as test:
        assert abs(train["images"][()].mean()) < 0.05
        assert test["images"][()].mean() > 10


def test_dataset_without_answers_gives_header_only(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    make_zindi(root, answers=False, sample=False)
    out = tmp_path / "out"
    run_normalize(root, NormalizeParams("standard", 12), FoldsParams(2, 0), out / "a.h5", out / "b.h5", out / "c.csv")
    assert (out / "c.csv").read_text() == "ID,label\n"
    with h5py.File(out / "b.h5") as h5:
        assert "submission_ids" not in h5
