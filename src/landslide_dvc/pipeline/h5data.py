"""Reading the pipeline's HDF5 files with clear errors for missing, truncated or foreign files."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from landslide_dvc.core.errors import DataError


@contextlib.contextmanager
def open_h5(path: str | Path, producer: str) -> Iterator[h5py.File]:
    """Open an HDF5 input read-only; ``producer`` names the stage that writes it (for the fix)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found; run `dvc repro {producer}` first")
    try:
        h5 = h5py.File(path, "r")
    except OSError:
        raise DataError(
            f"{path} is not a readable HDF5 file (truncated or corrupt); rerun `dvc repro -f {producer}`"
        ) from None
    try:
        yield h5
    except (KeyError, OSError, ValueError, TypeError) as exc:
        raise DataError(
            f"{path} is incomplete or has an unexpected layout ({exc}); rerun `dvc repro -f {producer}`"
        ) from None
    finally:
        h5.close()


def read_strings(dataset: h5py.Dataset) -> list[str]:
    """A variable-length string dataset as a list of str."""
    return [s.decode() if isinstance(s, bytes) else str(s) for s in dataset[()]]


def _attr_list(value: Any) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.atleast_1d(value)]


@dataclass
class Split:
    """One normalised split as produced by the `normalize` stage."""

    images: np.ndarray  # (N, C, 64, 64) float32
    ids: list[str]
    channels: list[str]
    labels: np.ndarray | None = None  # int8, train only
    fold: np.ndarray | None = None  # int8, train only
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def n_channels(self) -> int:
        return int(self.images.shape[1])


def _check_images(path: Path, images: np.ndarray, n: int, producer: str) -> None:
    if images.ndim != 4 or images.shape[0] != n:
        raise DataError(f"{path}: images have shape {images.shape} for {n} IDs; rerun `dvc repro -f {producer}`")
    if not np.isfinite(images).all():
        raise DataError(f"{path}: images contain NaN/Inf; rerun `dvc repro -f {producer}`")


def load_split(path: str | Path, *, with_images: bool = True) -> Split:
    """Load train.h5 or test.h5 written by the `normalize` stage."""
    path = Path(path)
    with open_h5(path, "normalize") as h5:
        ids = read_strings(h5["ids"])
        images = h5["images"][()] if with_images else np.empty((len(ids), *h5["images"].shape[1:]), np.float32)
        attrs = {k: h5.attrs[k] for k in h5.attrs}
        channels = _attr_list(attrs["channels"])
        split = Split(images=images, ids=ids, channels=channels, attrs=attrs)
        if "labels" in h5:
            split.labels = h5["labels"][()].astype(np.int8)
            split.fold = h5["fold"][()].astype(np.int8)
            if len(split.labels) != len(ids) or len(split.fold) != len(ids):
                raise DataError(f"{path}: labels/fold do not match the {len(ids)} IDs; rerun `dvc repro -f normalize`")
    if with_images:
        _check_images(path, images, len(ids), "normalize")
        if images.shape[1] != len(channels):
            raise DataError(f"{path}: {images.shape[1]} image channels but {len(channels)} channel names")
    return split


def load_masks(path: str | Path, n_images: int) -> np.ndarray | None:
    """The pixel masks (N, H, W) uint8 that normalize stores for Landslide4Sense splits, or None."""
    path = Path(path)
    with open_h5(path, "normalize") as h5:
        if "masks" not in h5:
            return None
        masks = h5["masks"][()].astype(np.uint8)
    if masks.ndim != 3 or len(masks) != n_images:
        raise DataError(f"{path}: masks have shape {masks.shape} for {n_images} images; rerun `dvc repro -f normalize`")
    return masks


@dataclass
class SyntheticSet:
    """The SMOTE images of one fold with their provenance."""

    images: np.ndarray  # (M, C, 64, 64) float32
    anchor_id: list[str]
    neighbor_id: list[str]
    lam: np.ndarray  # (M,) float64

    def __len__(self) -> int:
        return len(self.lam)


def load_synthetic(path: str | Path, fold: int) -> SyntheticSet:
    """Load the SMOTE group of ``fold`` from the `smote` stage's output."""
    path = Path(path)
    with open_h5(path, "smote") as h5:
        name = f"fold_{fold}"
        if name not in h5:
            raise DataError(
                f"{path} has no group {name} (it was made for {h5.attrs.get('n_splits')} folds, folds.ids); "
                f"rerun `dvc repro smote`"
            )
        group = h5[name]
        synthetic = SyntheticSet(
            images=group["images"][()],
            anchor_id=read_strings(group["anchor_id"]),
            neighbor_id=read_strings(group["neighbor_id"]),
            lam=group["lam"][()],
        )
    _check_images(path, synthetic.images, len(synthetic.lam), "smote")
    return synthetic


EMBEDDING_PARTS = ("train", "val", "test")


@dataclass
class Part:
    """Embeddings of one part (train, val or test) of one fold."""

    features: np.ndarray  # (N, D) float32
    prob: np.ndarray  # (N,) FC-head landslide probability
    ids: list[str]
    labels: np.ndarray | None  # int8; None for the test set
    synthetic: np.ndarray | None = None  # bool, train only: SMOTE image or original


def write_parts(path: Path, parts: dict[str, Part], fold: int) -> None:
    """One group per part: features, prob, ids, and labels/synthetic flags where known."""
    with h5py.File(path, "w") as h5:
        h5.attrs["fold"] = fold
        for name, part in parts.items():
            group = h5.create_group(name)
            group.create_dataset("features", data=part.features, track_times=False)
            group.create_dataset("prob", data=part.prob, track_times=False)
            group.create_dataset("ids", data=np.array(part.ids, dtype=object), dtype=h5py.string_dtype(), track_times=False)
            if part.labels is not None:
                group.create_dataset("labels", data=part.labels.astype(np.int8), track_times=False)
            if part.synthetic is not None:
                group.create_dataset("synthetic", data=part.synthetic, track_times=False)


def load_parts(path: str | Path) -> dict[str, Part]:
    """Read an embeddings file back (with clear errors for missing or corrupt files)."""
    path = Path(path)
    with open_h5(path, "extract_embeddings") as h5:
        parts = {}
        for name in EMBEDDING_PARTS:
            group = h5[name]
            part = Part(
                features=group["features"][()],
                prob=group["prob"][()],
                ids=read_strings(group["ids"]),
                labels=group["labels"][()] if "labels" in group else None,
                synthetic=group["synthetic"][()] if "synthetic" in group else None,
            )
            n = len(part.ids)
            if part.features.ndim != 2 or part.features.shape[0] != n or part.prob.shape != (n,):
                raise DataError(f"{path}: {name} arrays do not match its {n} IDs; rerun `dvc repro -f extract_embeddings`")
            if not (np.isfinite(part.features).all() and np.isfinite(part.prob).all()):
                raise DataError(f"{path}: {name} embeddings contain NaN/Inf; rerun `dvc repro -f extract_embeddings`")
            parts[name] = part
    return parts
