"""Normalisation maths, folds and the HDF5 layout written by `normalize`."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import make_zindi
from helpers import files_under, run_stage_script, write_params

from landslide_dvc.core.channels import channel_names
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.scaling import apply_statistics, fit_statistics
from landslide_dvc.pipeline.normalize import FoldsParams, NormalizeParams, assign_folds, run_normalize, split_attrs


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


def test_both_formats_share_one_attribute_layout() -> None:
    """The format's own attributes sit between the scaling and the folds: that order is in the files' bytes."""
    center, scale = np.zeros(2), np.ones(2)
    norm, folds = NormalizeParams("robust", 12), FoldsParams(list(range(5)), 7)
    zindi = split_attrs(["B1", "B2"], norm, center, scale, folds, {"optical_scale": 1.0})
    l4s = split_attrs(["B1", "B2"], norm, center, scale, folds, {"format": "l4s", "min_pixels": 1, "patch_size": 128})
    assert list(zindi) == ["channels", "method", "center", "scale", "optical_scale", "n_splits", "folds_seed"]
    assert list(l4s) == ["channels", "method", "center", "scale", "format", "min_pixels", "patch_size", "n_splits", "folds_seed"]
    assert zindi["method"] == "robust" and (zindi["n_splits"], zindi["folds_seed"]) == (5, 7)


def test_folds_are_stratified_shuffled_and_seeded() -> None:
    labels = np.array([1] * 20 + [0] * 80, dtype=np.int8)
    fold = assign_folds(labels, 5, seed=3, source="Train.csv")
    assert sorted(np.unique(fold)) == [0, 1, 2, 3, 4]
    for k in range(5):
        assert (labels[fold == k] == 1).sum() == 4 and (fold == k).sum() == 20
    np.testing.assert_array_equal(fold, assign_folds(labels, 5, seed=3, source="Train.csv"))
    assert not np.array_equal(fold, assign_folds(labels, 5, seed=4, source="Train.csv"))
    assert not np.array_equal(fold[:20], np.sort(fold[:20]))  # shuffled, not blocks


def test_folds_need_enough_images_per_class() -> None:
    # the message names the training set of either format (Train.csv, or L4S's TrainData masks)
    with pytest.raises(DataError, match=r"^l4s/TrainData \(masks\) has 2 landslide and 5 other images; .*at least 5 images for 5"):
        assign_folds(np.array([1, 1, 0, 0, 0, 0, 0], dtype=np.int8), 5, seed=0, source="l4s/TrainData (masks)")


@pytest.mark.parametrize("channels", [12, 20, 28])
@pytest.mark.parametrize("method", ["standard", "robust"])
def test_run_normalize_writes_splits(tmp_path: Path, channels: int, method: str) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root, n_train=20, n_test=6, n_pos=6)
    out = tmp_path / "out"
    run_normalize(root, NormalizeParams(method, channels), FoldsParams(list(range(3)), 0), out / "train.h5", out / "test.h5", out / "answers.csv", optical_scale=10000.0)
    with h5py.File(out / "train.h5") as h5:
        images = h5["images"][()]
        assert images.shape == (20, channels, 64, 64) and images.dtype == np.float32
        assert [s.decode() for s in h5["ids"][()]] == info["train_ids"]
        np.testing.assert_array_equal(h5["labels"][()], info["labels"])
        assert sorted(np.unique(h5["fold"][()])) == [0, 1, 2]
        assert list(h5.attrs["channels"]) == channel_names(channels)
        assert h5.attrs["method"] == method
        assert h5.attrs["optical_scale"] == 10000.0
        center, scale = h5.attrs["center"], h5.attrs["scale"]
        # the stored statistics reproduce the stored images from the raw patches (optics as reflectance)
        raw = info["arrays"][info["train_ids"][0]].transpose(2, 0, 1).astype(np.float64)
        raw[:4] /= 10000.0
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
    # shift every test patch's SAR bands: training statistics must not move
    for path in (root / "test_data").glob("*.npy"):
        patch = np.load(path)
        patch[..., 4:] += 100.0
        np.save(path, patch)
    out = tmp_path / "out"
    run_normalize(root, NormalizeParams("standard", 12), FoldsParams(list(range(2)), 0), out / "a.h5", out / "b.h5", out / "c.csv", optical_scale=10000.0)
    with h5py.File(out / "a.h5") as train, h5py.File(out / "b.h5") as test:
        assert abs(train["images"][()].mean()) < 0.05
        assert test["images"][:, 4:].mean() > 10


def test_dataset_without_answers_gives_header_only(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root, answers=False, sample=False)
    out = tmp_path / "out"
    run_normalize(root, NormalizeParams("standard", 12), FoldsParams(list(range(2)), 0), out / "a.h5", out / "b.h5", out / "c.csv", optical_scale=10000.0)
    assert (out / "c.csv").read_text() == "ID,label\n"
    with h5py.File(out / "b.h5") as h5:
        assert [s.decode() for s in h5["submission_ids"][()]] == info["test_ids"]  # Test.csv's order
        assert list(h5.attrs["submission_columns"]) == ["ID", "Target"]


def test_digital_numbers_with_scale_10000_equal_reflectance_with_scale_1(tmp_path: Path) -> None:
    """The real files' DN (float64, nested) give the same normalised channels, EVI2 included."""
    outputs = {}
    for name, scale, dtype in (("dn", 10000.0, "float64"), ("reflectance", 1.0, "float32")):
        root = tmp_path / name
        make_zindi(root, n_train=12, n_test=5, n_pos=4, seed=3, optical_scale=scale, dtype=dtype, nested=scale > 1)
        out = tmp_path / f"out_{name}"
        run_normalize(
            root, NormalizeParams("standard", 20), FoldsParams(list(range(2)), 0), out / "train.h5", out / "test.h5", out / "a.csv",
            optical_scale=scale,
        )
        outputs[name] = out
        with h5py.File(out / "train.h5") as h5:
            assert h5.attrs["optical_scale"] == scale
        with h5py.File(out / "test.h5") as h5:
            assert h5.attrs["optical_scale"] == scale
    for split in ("train.h5", "test.h5"):
        with h5py.File(outputs["dn"] / split) as dn, h5py.File(outputs["reflectance"] / split) as refl:
            np.testing.assert_allclose(dn["images"][()], refl["images"][()], atol=2e-4)
            np.testing.assert_allclose(dn.attrs["center"], refl.attrs["center"], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("data_scale", "setting", "expected"),
    [
        (1.0, 10000, "look like reflectance (99th percentile 0.2"),
        (10000.0, 1, "look like Sentinel-2 digital numbers (99th percentile 2"),
    ],
)
def test_optical_scale_contradicting_the_data_stops_normalize(
    data_scale: float, setting: int, expected: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    make_zindi(tmp_path / "data" / "zindi", optical_scale=data_scale)
    write_params(tmp_path / "params.yaml", data={"dir": "data/zindi", "optical_scale": setting})
    before = files_under(tmp_path)
    code, err = run_stage_script("normalize", tmp_path, monkeypatch, capsys)
    fits = 1 if setting == 10000 else 10000
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert expected in err and err.strip().endswith(f"but data.optical_scale is {setting}; set data.optical_scale: {fits}")
    assert "train_data (Train.csv)" in err
    assert files_under(tmp_path) == before


def test_every_format_is_one_registry_entry_and_an_unknown_one_is_refused() -> None:
    from landslide_dvc.core.errors import ParamError
    from landslide_dvc.formats.registry import DATASET_FORMATS, dataset_format

    assert list(DATASET_FORMATS) == ["zindi", "l4s"]
    assert dataset_format("l4s").params_section == "l4s" and dataset_format("zindi").params_section is None
    with pytest.raises(ParamError, match="data.format='sen12'.*zindi, l4s"):
        dataset_format("sen12")
    with pytest.raises(ParamError, match="normalize.channels=20 does not fit data.format: l4s; use one of 14, 17"):
        NormalizeParams("standard", 20).check_format("l4s")
