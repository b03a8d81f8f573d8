"""The `normalize` stage: validated dataset -> channel set -> per-channel scaling -> folds -> HDF5.

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
from landslide_dvc.core.channels import ChannelSet, channel_names, check_optical_scale, raw_to_channels
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.io import atomic_paths, content_digest
from landslide_dvc.core.l4s_channels import derive_l4s_channels, l4s_channel_names
from landslide_dvc.core.params import Exact, params_section, require
from landslide_dvc.core.patches import TEST_CSV, TEST_DIR, TRAIN_CSV, TRAIN_DIR, load_images
from landslide_dvc.core.scaling import apply_statistics, fit_statistics
from landslide_dvc.formats.l4s import (
    TRAIN_SPLIT,
    L4SParams,
    labels_from_masks,
    load_l4s_split,
)
from landslide_dvc.formats.zindi import read_index


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
        """Each layout has its own channel sets."""
        allowed = (14, 17) if data_format == "l4s" else (12, 20, 28)
        require(
            self.channels in allowed,
            f"normalize.channels={self.channels} does not fit data.format: {data_format}; use one of "
            f"{', '.join(map(str, allowed))}",
        )
        require(
            not (data_format == "l4s" and self.method == "ssl4eo"),
            "normalize.method=ssl4eo does not fit data.format: l4s (the release is already rescaled with unpublished "
            "constants, so DN / 10,000 cannot be recovered); use standard (docs/weights.md)",
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


def load_channels(root: Path, folder: str, ids: list[str], csv_name: str, channels: ChannelSet, optical_scale: float) -> np.ndarray:
    """Load one split's patches, check their optical scale, and derive the channel set (unscaled)."""
    raw = load_images(root, folder, ids, csv_name)
    check_optical_scale(raw, optical_scale, f"{root / folder} ({csv_name})")
    return raw_to_channels(raw, channels, optical_scale)


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
    optical_scale: float,
) -> NormalizeResult:
    """Validate the dataset at ``data_dir`` and write the normalised splits."""
    norm.check_format("zindi")
    root = Path(data_dir)
    index = read_index(root)
    fold = assign_folds(index.train_labels, folds.n_splits, folds.seed, str(root / TRAIN_CSV))
    train = load_channels(root, TRAIN_DIR, index.train_ids, TRAIN_CSV, norm.channels, optical_scale)  # type: ignore[arg-type]
    test = load_channels(root, TEST_DIR, index.test_ids, TEST_CSV, norm.channels, optical_scale)  # type: ignore[arg-type]
    channels = channel_names(norm.channels)  # type: ignore[arg-type]
    center, scale, sources = _scale_splits(train, test, norm.method, channels)
    attrs = split_attrs(channels, norm, center, scale, folds, {"optical_scale": float(optical_scale)}, sources)
    # One ID per submission row: `submit` writes them in this order, a repeated ID with its one score.
    test_extra = {"submission_ids": np.array(index.submission_order, dtype=object)}
    attrs_test = {**attrs, "submission_columns": index.submission_header}
    _write_outputs(
        (out_train, out_test, out_answers),
        (train, index.train_ids, attrs, {"labels": index.train_labels, "fold": fold}),
        (test, index.test_ids, attrs_test, test_extra),
        index.test_labels,  # the real Zindi test set has no answers
    )
    return NormalizeResult(
        n_train=len(index.train_ids),
        n_train_landslide=int(index.train_labels.sum()),
        n_test=len(index.test_ids),
        n_submission_rows=len(index.submission_order),
        n_channels=int(norm.channels),
        notices=index.notices,
    )


def run_normalize_l4s(
    data_dir: Path,
    l4s: L4SParams,
    norm: NormalizeParams,
    folds: FoldsParams,
    out_train: Path,
    out_test: Path,
    out_answers: Path,
) -> NormalizeResult:
    """Validate a Landslide4Sense folder and write the normalised splits with their masks."""
    norm.check_format("l4s")
    root = Path(data_dir)
    train = load_l4s_split(root, TRAIN_SPLIT, masks_required=True)
    test = load_l4s_split(root, l4s.test_split, masks_required=False)
    if test.images.shape[1:] != train.images.shape[1:]:
        raise DataError(
            f"{test.folder}: images of shape {test.images.shape[1:]} (bands, H, W) differ from "
            f"{train.folder}'s {train.images.shape[1:]}; both splits must come from the same release"
        )
    assert train.masks is not None  # masks_required
    labels = labels_from_masks(train.masks, l4s.min_pixels)
    fold = assign_folds(labels, folds.n_splits, folds.seed, f"{train.folder} (labels from masks with >= {l4s.min_pixels} landslide pixels)")
    train_images = derive_l4s_channels(train.images, norm.channels)  # type: ignore[arg-type]
    test_images = derive_l4s_channels(test.images, norm.channels)  # type: ignore[arg-type]
    channels = l4s_channel_names(norm.channels)  # type: ignore[arg-type]
    center, scale, _ = _scale_splits(train_images, test_images, norm.method, channels)  # check_format refused ssl4eo
    layout = {"format": "l4s", "min_pixels": l4s.min_pixels, "patch_size": int(train_images.shape[-1])}
    attrs = split_attrs(channels, norm, center, scale, folds, layout)
    test_extra: dict[str, np.ndarray] = {"submission_ids": np.array(test.ids, dtype=object)}
    test_labels = None
    if test.masks is not None:
        test_extra["masks"] = test.masks
        test_labels = labels_from_masks(test.masks, l4s.min_pixels)
    attrs_test = {**attrs, "split": l4s.test_split, "submission_columns": ["ID", "Target"]}
    _write_outputs(
        (out_train, out_test, out_answers),
        (train_images, train.ids, {**attrs, "split": TRAIN_SPLIT}, {"labels": labels, "fold": fold, "masks": train.masks}),
        (test_images, test.ids, attrs_test, test_extra),
        test_labels,  # a split without masks has no answers
    )
    return NormalizeResult(
        n_train=len(train.ids),
        n_train_landslide=int(labels.sum()),
        n_test=len(test.ids),
        n_submission_rows=len(test.ids),
        n_channels=int(norm.channels),
        notices=(),
    )
