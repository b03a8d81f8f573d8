"""The `normalize` stage: validated dataset -> channel set -> per-channel scaling -> folds -> HDF5.

The dataset is read by its format's module (``data.format``, ``formats.registry``: its files,
channels, labels and what it adds to each split, as ``formats.dataset.FormatData``); the scaling,
folds and files below are the same path for every format.

Output files (h5py):
  train.h5: images (N, C, 64, 64) float32, ids (str), labels (int8), fold (int8)
  test.h5:  images and ids of the distinct test images (an ID listed twice is stored once), and
            submission_ids: one ID per submission row, repeats kept, in the sample submission's
            order (Test.csv's when there is no sample file); attribute submission_columns: its header
  attributes on both: channels, method, center, scale (the statistics used), optical_scale,
  n_splits, folds_seed; with normalize.method: ssl4eo also scaling_sources (one line per channel
  whose statistics are the pretrained weights' own)
Optical bands are converted to reflectance (divided by data.optical_scale) before channels are
derived. The statistics are fitted on the training images only and applied to both splits;
``ssl4eo`` replaces the fitted ones of the Sentinel-2 and Sentinel-1 channels with the scaling
SSL4EO-S12's weights were trained with (``landslide_dvc.core.band_identity``), and is refused for
Landslide4Sense, whose release is already rescaled with unpublished constants. Test
answers, when the dataset has them, go to a separate CSV that no training stage reads.

With data.format: l4s (Landslide4Sense, ``landslide_dvc.formats.l4s``) the same files are written from
TrainData/ and the split ``l4s.test_split``, images (N, C, H, W) at the release's patch size, plus
``masks`` (N, H, W) uint8 on both files (test.h5 only when the split has masks); labels are
image-level labels from the masks (``l4s.min_pixels``), and the answers CSV holds the test split's
labels when it has masks.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import h5py
import numpy as np
from sklearn.model_selection import StratifiedKFold

from landslide_dvc.core.band_identity import weights_scaling
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.io import atomic_paths, content_digest
from landslide_dvc.core.params import Exact, params_section, require
from landslide_dvc.core.scaling import apply_statistics, fit_statistics
from landslide_dvc.formats.registry import dataset_format


@params_section
class DataParams:
    """`data:` section."""

    dir: str  # folder in the Zindi layout, inside the repository (e.g. data/synthetic, data/zindi)
    optical_scale: float  # optical value of reflectance 1: 10000 for Sentinel-2 digital numbers, 1 for reflectance
    format: Literal["zindi", "l4s"]  # zindi: the challenge's CSV + .npy layout; l4s: Landslide4Sense HDF5

    def validate(self) -> None:
        require(self.optical_scale > 0, f"data.optical_scale={self.optical_scale} must be > 0 (10000 or 1)")


@params_section
class NormalizeParams:
    """`normalize:` section (Table 2: Norm. and #Ch columns)."""

    # standard: (x - mean) / std; robust: (x - median) / IQR; ssl4eo: the scaling of SSL4EO-S12's weights
    # (S2 reflectance = DN / 10,000, S1 (dB - mean) / std, published values) where a channel has a band, else standard
    method: Literal["standard", "robust", "ssl4eo"]
    channels: Annotated[Literal[12, 14, 17, 20, 28], Exact]  # Zindi: 12, 20, 28; Landslide4Sense: 14 bands, 17 (+ differences)

    def check_format(self, data_format: str) -> None:
        """Each dataset format has its own channel sets, and ssl4eo only where DN / 10,000 is recoverable."""
        fmt = dataset_format(data_format)
        require(
            self.channels in fmt.channel_sets,
            f"normalize.channels={self.channels} does not fit data.format: {data_format}; use one of "
            f"{', '.join(map(str, fmt.channel_sets))}",
        )
        require(
            fmt.ssl4eo or self.method != "ssl4eo",
            f"normalize.method=ssl4eo does not fit data.format: {data_format} ({fmt.ssl4eo_refusal}); use standard (docs/weights.md)",
        )


@params_section
class FoldsParams:
    """`folds:` section: the fold ids 0..K-1 of a stratified K-fold split.

    dvc.yaml makes one `train_fold` stage per id (`foreach: ${folds.ids}`), so the fold count is
    written once, here.
    """

    ids: list[int]
    seed: int

    @property
    def n_splits(self) -> int:
        return len(self.ids)

    def validate(self) -> None:
        require(
            len(self.ids) >= 2 and list(self.ids) == list(range(len(self.ids))),
            f"folds.ids={list(self.ids)} must be 0, 1, ..., K-1 with K >= 2 (one train_fold stage per fold)",
        )


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


def assign_folds(labels: np.ndarray, n_splits: int, seed: int, source: str) -> np.ndarray:
    """Stratified, shuffled fold index (0..n_splits-1) of every training image (``source`` names them in errors)."""
    counts = np.bincount(labels, minlength=2)
    if counts.min() < n_splits:
        raise DataError(
            f"{source} has {counts[1]} landslide and {counts[0]} other images; each class needs at "
            f"least {n_splits} images for {n_splits} stratified folds (folds.ids): add data or use fewer folds"
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


def split_attrs(
    channels: list[str],
    norm: NormalizeParams,
    center: np.ndarray,
    scale: np.ndarray,
    folds: FoldsParams,
    layout: dict[str, Any],
    scaling_sources: list[str] | None = None,
) -> dict[str, Any]:
    """The attributes train.h5 and test.h5 share: channel set, scaling, the format's own (``layout``), folds.

    The key order is the order the attributes are written in, which is part of the files' bytes;
    ``scaling_sources`` (ssl4eo only) is added last, so the other methods' files keep their bytes.
    """
    attrs = {
        "channels": channels,
        "method": norm.method,
        "center": center,
        "scale": scale,
        **layout,
        "n_splits": folds.n_splits,
        "folds_seed": folds.seed,
    }
    if scaling_sources:
        attrs["scaling_sources"] = scaling_sources
    return attrs


@dataclass(frozen=True)
class NormalizeResult:
    """What `normalize` wrote, for the stage's summary line, and the accepted repeats (one line each)."""

    n_train: int
    n_train_landslide: int
    n_test: int  # distinct test images
    n_submission_rows: int  # rows the submission will have (repeats included)
    n_channels: int
    notices: tuple[str, ...]


def _scale_splits(
    train: np.ndarray, test: np.ndarray, method: str, channels: list[str]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Fit the per-channel statistics on the training images only and scale both splits in place.

    ssl4eo: the standard statistics, then the pretrained weights' own for the channels with a band.
    """
    center, scale = fit_statistics(train, "robust" if method == "robust" else "standard")
    sources = weights_scaling(channels, center, scale) if method == "ssl4eo" else []
    apply_statistics(train, center, scale)
    apply_statistics(test, center, scale)
    return center, scale, sources


def _write_outputs(
    outs: tuple[Path, Path, Path],
    train: tuple[np.ndarray, list[str], dict[str, Any], dict[str, Any]],
    test: tuple[np.ndarray, list[str], dict[str, Any], dict[str, Any]],
    test_labels: np.ndarray | None,
) -> None:
    """train.h5, test.h5 (images, ids, attrs, extra datasets) and the answers CSV, published together.

    The answers file is header-only when the test split has no labels.
    """
    with atomic_paths(*outs) as (tmp_train, tmp_test, tmp_answers):
        _write_split(tmp_train, *train)
        _write_split(tmp_test, *test)
        with tmp_answers.open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(["ID", "label"])
            if test_labels is not None:
                writer.writerows(zip(test[1], test_labels.tolist()))


def run_normalize(
    data_dir: Path,
    norm: NormalizeParams,
    folds: FoldsParams,
    out_train: Path,
    out_test: Path,
    out_answers: Path,
    *,
    optical_scale: float = 10000.0,
    data_format: str = "zindi",
    format_params: Any = None,
) -> NormalizeResult:
    """Read the dataset at ``data_dir`` with its format (``formats.registry``), scale it, assign the folds and
    write the normalised splits; one path for every format."""
    norm.check_format(data_format)
    data = dataset_format(data_format).read(Path(data_dir), int(norm.channels), format_params, optical_scale)
    fold = assign_folds(data.train_labels, folds.n_splits, folds.seed, data.labels_source)
    center, scale, sources = _scale_splits(data.train.images, data.test.images, norm.method, data.channels)
    attrs = split_attrs(data.channels, norm, center, scale, folds, data.layout, sources)
    _write_outputs(
        (out_train, out_test, out_answers),
        (data.train.images, data.train.ids, {**attrs, **data.train.attrs}, {"labels": data.train_labels, "fold": fold, **data.train.extra}),
        (data.test.images, data.test.ids, {**attrs, **data.test.attrs}, data.test.extra),
        data.test_labels,
    )
    return NormalizeResult(
        n_train=len(data.train.ids),
        n_train_landslide=int(data.train_labels.sum()),
        n_test=len(data.test.ids),
        n_submission_rows=data.n_submission_rows,
        n_channels=int(norm.channels),
        notices=data.notices,
    )
