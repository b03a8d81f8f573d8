"""The `normalize` stage: validated dataset -> channel set -> per-channel scaling -> folds -> HDF5.

Output files (h5py):
  train.h5: images (N, C, 64, 64) float32, ids (str), labels (int8), fold (int8)
  test.h5:  images, ids, and the sample submission's order (submission_ids) when there is one
  attributes on both: channels, method, center, scale (the statistics used), n_splits, folds_seed
The statistics are fitted on the training images only and applied to both splits. Test answers,
when the dataset has them, go to a separate CSV that no training stage reads.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
from sklearn.model_selection import StratifiedKFold

from landslide.channels import ChannelSet, channel_names, derive_channels
from landslide.data import load_images, read_index
from landslide.errors import DataError
from landslide.io import atomic_paths, content_digest
from landslide.params import require

NormMethod = Literal["standard", "robust"]


@dataclass(frozen=True)
class DataParams:
    """`data:` section."""

    dir: str  # folder in the Zindi layout, inside the repository (e.g. data/synthetic, data/zindi)


@dataclass(frozen=True)
class NormalizeParams:
    """`normalize:` section (Table 2: Norm. and #Ch columns)."""

    method: NormMethod  # standard: (x - mean) / std; robust: (x - median) / IQR
    channels: ChannelSet  # 12 raw bands, 20 (+ indices), 28 (+ edge maps)


@dataclass(frozen=True)
class FoldsParams:
    """`folds:` section."""

    n_splits: int
    seed: int

    def validate(self) -> None:
        require(self.n_splits >= 2, f"folds.n_splits={self.n_splits} must be >= 2")


def check_data_dir(data_dir: str, repo_root: Path | None = None) -> Path:
    """Resolve data.dir and require it to be inside the repository (so DVC can track it)."""
    root = (repo_root or Path.cwd()).resolve()
    path = (root / data_dir).resolve()
    if not path.is_relative_to(root):
        raise DataError(
            f"data.dir={data_dir} is outside the repository ({root}); move or copy the dataset "
            f"inside it (e.g. data/zindi), `dvc add` it and set data.dir to that path"
        )
    return path


def fit_statistics(images: np.ndarray, method: NormMethod) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (center, scale) over all pixels of ``images`` (N, C, H, W), float64.

    standard: mean and standard deviation; robust: median and inter-quartile range.
    A constant channel gets scale 1 so it maps to 0 instead of dividing by zero.
    """
    n_channels = images.shape[1]
    center = np.empty(n_channels)
    scale = np.empty(n_channels)
    for c in range(n_channels):
        values = images[:, c].reshape(-1)
        if method == "standard":
            center[c] = values.mean(dtype=np.float64)
            scale[c] = values.std(dtype=np.float64)
        elif method == "robust":
            q25, q50, q75 = np.percentile(values, [25, 50, 75])
            center[c], scale[c] = q50, q75 - q25
        else:  # pragma: no cover - params validation rejects it first
            raise ValueError(method)
    scale[~(scale > 1e-12)] = 1.0
    return center, scale


def apply_statistics(images: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(x - center) / scale per channel, in place on a float32 array; returns it."""
    images -= center.astype(np.float32)[None, :, None, None]
    images /= scale.astype(np.float32)[None, :, None, None]
    return images


def assign_folds(labels: np.ndarray, n_splits: int, seed: int) -> np.ndarray:
    """Stratified, shuffled fold index (0..n_splits-1) of every training image."""
    counts = np.bincount(labels, minlength=2)
    if counts.min() < n_splits:
        raise DataError(
            f"Train.csv has {counts[1]} landslide and {counts[0]} other images; each class needs at "
            f"least folds.n_splits={n_splits} images for stratified folds: add data or lower folds.n_splits"
        )
    fold = np.empty(len(labels), dtype=np.int8)
    splitter = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for k, (_, val_idx) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold[val_idx] = k
    return fold


def _write_split(
    path: Path,
    images: np.ndarray,
    ids: list[str],
    attrs: dict,
    extra: dict[str, np.ndarray],
) -> None:
    with h5py.File(path, "w", track_order=False) as h5:
        h5.create_dataset("images", data=images, track_times=False)
        h5.create_dataset("ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype(), track_times=False)
        for name, values in extra.items():
            if values.dtype == object:
                h5.create_dataset(name, data=values, dtype=h5py.string_dtype(), track_times=False)
            else:
                h5.create_dataset(name, data=values, track_times=False)
        for key, value in attrs.items():
            h5.attrs[key] = value
        h5.attrs["content_digest"] = content_digest(images)


def run_normalize(
    data_dir: Path,
    norm: NormalizeParams,
    folds: FoldsParams,
    out_train: Path,
    out_test: Path,
    out_answers: Path,
) -> dict[str, int]:
    """Validate the dataset at ``data_dir`` and write the normalised splits; returns counts."""
    root = Path(data_dir)
    index = read_index(root)
    train_raw = load_images(root, "train_data", index.train_ids, "Train.csv")
    test_raw = load_images(root, "test_data", index.test_ids, "Test.csv")
    fold = assign_folds(index.train_labels, folds.n_splits, folds.seed)

    train = derive_channels(train_raw, norm.channels)
    del train_raw
    test = derive_channels(test_raw, norm.channels)
    del test_raw
    center, scale = fit_statistics(train, norm.method)
    apply_statistics(train, center, scale)
    apply_statistics(test, center, scale)

    attrs = {
        "channels": channel_names(norm.channels),
        "method": norm.method,
        "center": center,
        "scale": scale,
        "n_splits": folds.n_splits,
        "folds_seed": folds.seed,
    }
    test_extra: dict[str, np.ndarray] = {}
    if index.submission_ids is not None:
        test_extra["submission_ids"] = np.array(index.submission_ids, dtype=object)
        attrs_test = {**attrs, "submission_columns": index.submission_columns}
    else:
        attrs_test = attrs
    with atomic_paths(out_train, out_test, out_answers) as (tmp_train, tmp_test, tmp_answers):
        _write_split(tmp_train, train, index.train_ids, attrs, {"labels": index.train_labels, "fold": fold})
        _write_split(tmp_test, test, index.test_ids, attrs_test, test_extra)
        with tmp_answers.open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["ID", "label"])
            if index.test_labels is not None:  # the real Zindi test set has no answers: header only
                writer.writerows(zip(index.test_ids, index.test_labels.tolist()))
    return {
        "n_train": len(index.train_ids),
        "n_train_landslide": int(index.train_labels.sum()),
        "n_test": len(index.test_ids),
        "n_channels": int(norm.channels),
    }
