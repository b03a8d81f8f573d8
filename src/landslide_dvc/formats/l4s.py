"""Landslide4Sense 2022 data in: the official HDF5 layout, pixel masks, image-level labels, channels.

Layout (docs/data-formats.md): ``TrainData/img/image_N.h5`` (dataset ``img``, H x W x 14, channels
last) and ``TrainData/mask/mask_N.h5`` (dataset ``mask``, H x W, 0/1); ``ValidData/`` and
``TestData/`` the same, their ``mask/`` folders optional (the first release had none, the later
full release has them). Patch size and band count are read from the files (128 x 128 x 14 in the
release, 32 x 32 in torchgeo's test fixture). Everything broken is a DataError naming the file
and the fix, raised before anything is written.

Bands: Sentinel-2 B1-B12 (no B8A), slope, DEM. The release stores them already rescaled (means
near 0, standard deviations near 1) with constants it does not publish, so reflectance ratios
such as NDVI cannot be recovered from the files; the derived channels are therefore band
differences, which keep their meaning under a per-band affine rescaling up to scale and offset:
  B8-B4   near infrared minus red: vegetation contrast (falls on fresh scars, NDVI's numerator)
  B3-B8   green minus near infrared: water (NDWI's numerator)
  B12-B8  short-wave infrared minus near infrared: bare soil and rock (NBR's numerator, negated)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from landslide_dvc.core.bands import L4S_BANDS
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.params import params_section, require

TRAIN_SPLIT = "TrainData"
VALID_SPLIT = "ValidData"
TEST_SPLIT = "TestData"
SPLITS = (TRAIN_SPLIT, VALID_SPLIT, TEST_SPLIT)
IMAGE_DIR, MASK_DIR = "img", "mask"
IMAGE_KEY, MASK_KEY = "img", "mask"
_IMAGE_FILE = re.compile(r"^image_(\d+)\.h5$")
_MASK_FILE = re.compile(r"^mask_(\d+)\.h5$")

DIFFERENCE_CHANNELS: tuple[tuple[str, str, str], ...] = (
    ("B8-B4", "B8", "B4"),
    ("B3-B8", "B3", "B8"),
    ("B12-B8", "B12", "B8"),
)
L4SChannelSet = Literal[14, 17]


@params_section
class L4SParams:
    """`l4s:` section (read when data.format is l4s)."""

    min_pixels: int  # landslide pixels that make a patch a landslide patch (image-level label)
    test_split: Literal["ValidData", "TestData"]  # the split written as test.h5 (scored when it has masks)

    def validate(self) -> None:
        require(self.min_pixels >= 1, f"l4s.min_pixels={self.min_pixels} must be >= 1")


@dataclass
class L4SSplit:
    """One split as read: IDs (``image_N``), images (N, bands, H, W) float32, masks (N, H, W) uint8 or None."""

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray | None


def _numbered(folder: Path, pattern: re.Pattern[str], example: str) -> dict[int, Path]:
    """{N: path} of the ``*.h5`` files in ``folder``; any other .h5 name is an error."""
    found: dict[int, Path] = {}
    for path in sorted(folder.glob("*.h5")):
        match = pattern.match(path.name)
        if match is None:
            raise DataError(f"{path} is not named like {example}; rename it (the number pairs image and mask)")
        found[int(match.group(1))] = path
    return found


def read_array(path: Path, key: str) -> np.ndarray:
    """Dataset ``key`` of an HDF5 file as a numpy array; a missing key or unreadable file is a DataError."""
    try:
        with h5py.File(path, "r") as h5:
            if key not in h5:
                keys = ", ".join(sorted(h5.keys())) or "none"
                raise DataError(
                    f"{path} has no dataset '{key}' (it has: {keys}); the Landslide4Sense files store it "
                    f"under '{key}': rewrite the file with that key"
                )
            array = h5[key][()]
    except OSError as exc:
        raise DataError(f"{path} is not a readable HDF5 file ({exc}); re-extract it") from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "iufb":
        raise DataError(f"{path}: dataset '{key}' is not a numeric array; store it as float32")
    return array


def _check_image(path: Path, image: np.ndarray, size: tuple[int, int] | None) -> None:
    n_bands = len(L4S_BANDS)
    if image.ndim != 3 or image.shape[-1] != n_bands:
        hint = " (channels first? the release is channels last)" if image.ndim == 3 and image.shape[0] == n_bands else ""
        raise DataError(f"{path} has shape {image.shape}, expected (H, W, {n_bands}){hint}; fix or remove the image")
    if size is not None and image.shape[:2] != size:
        raise DataError(
            f"{path} is {image.shape[0]} x {image.shape[1]} px but the other images are {size[0]} x {size[1]}; "
            f"all patches must have one size: fix or remove it"
        )
    bad = int(image.size - np.count_nonzero(np.isfinite(image)))
    if bad:
        raise DataError(f"{path} contains {bad} NaN/Inf values; fill them or remove the image and its mask")


def _check_mask(path: Path, mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if mask.shape != size:
        raise DataError(f"{path} has shape {mask.shape}, expected {size} (the image's H x W); fix or remove it")
    if mask.dtype.kind == "f" and not np.isfinite(mask).all():
        raise DataError(f"{path} contains NaN/Inf; a mask holds 1 (landslide) or 0 (other) per pixel: fix it")
    values = np.unique(mask)
    if not np.isin(values, (0, 1)).all():
        shown = ", ".join(f"{v:g}" for v in values[~np.isin(values, (0, 1))][:3])
        raise DataError(
            f"{path} is not binary (values {shown}); store 1 for landslide pixels and 0 elsewhere "
            f"(e.g. mask // 255 for 0/255 masks)"
        )
    return mask.astype(np.uint8)


def load_l4s_split(root: Path, split: str, *, masks_required: bool) -> L4SSplit:
    """Read ``root/split`` (img/ and, when present or required, mask/), validated, in image-number order."""
    image_dir, mask_dir = root / split / IMAGE_DIR, root / split / MASK_DIR
    if not image_dir.is_dir():
        raise DataError(
            f"{image_dir} not found; data.dir must hold the Landslide4Sense layout "
            f"({split}/{IMAGE_DIR}/image_N.h5): point data.dir at the folder that holds TrainData/"
        )
    images = _numbered(image_dir, _IMAGE_FILE, "image_N.h5")
    if not images:
        raise DataError(f"{image_dir} holds no image_N.h5 files; add the split's images")
    masks: dict[int, Path] | None = None
    if mask_dir.is_dir():
        masks = _numbered(mask_dir, _MASK_FILE, "mask_N.h5")
    elif masks_required:
        raise DataError(f"{mask_dir} not found; the training split needs a mask_N.h5 for every image_N.h5")
    if masks is not None:
        missing = sorted(set(images) - set(masks))
        if missing:
            raise DataError(
                f"{mask_dir / f'mask_{missing[0]}.h5'} not found ({len(missing)} of {len(images)} images have "
                f"no mask); add the masks or remove those images"
            )
        orphans = sorted(set(masks) - set(images))
        if orphans:
            raise DataError(
                f"{masks[orphans[0]]} has no image ({image_dir / f'image_{orphans[0]}.h5'} not found); "
                f"add the image or remove the mask"
            )
    numbers = sorted(images)
    first = read_array(images[numbers[0]], IMAGE_KEY)
    _check_image(images[numbers[0]], first, None)
    size = (int(first.shape[0]), int(first.shape[1]))
    out = np.empty((len(numbers), first.shape[2], *size), np.float32)
    out_masks = np.empty((len(numbers), *size), np.uint8) if masks is not None else None
    for k, number in enumerate(numbers):
        image = first if k == 0 else read_array(images[number], IMAGE_KEY)
        _check_image(images[number], image, size)
        out[k] = np.moveaxis(image.astype(np.float32), -1, 0)
        if out_masks is not None and masks is not None:
            out_masks[k] = _check_mask(masks[number], read_array(masks[number], MASK_KEY), size)
    return L4SSplit(ids=[f"image_{n}" for n in numbers], images=out, masks=out_masks)


def labels_from_masks(masks: np.ndarray, min_pixels: int) -> np.ndarray:
    """Image-level labels (N,) int8: 1 where a mask (N, H, W) has at least ``min_pixels`` landslide pixels."""
    return (masks.reshape(len(masks), -1).sum(axis=1, dtype=np.int64) >= min_pixels).astype(np.int8)


def l4s_channel_names(channels: L4SChannelSet) -> list[str]:
    """14: the bands as released; 17: + the three band differences."""
    names = list(L4S_BANDS) + ([name for name, _, _ in DIFFERENCE_CHANNELS] if channels >= 17 else [])
    if len(names) != channels:
        raise ValueError(f"unsupported Landslide4Sense channel set {channels}")
    return names


def derive_l4s_channels(raw: np.ndarray, channels: L4SChannelSet) -> np.ndarray:
    """Bands (N, 14, H, W) -> the channel set (N, channels, H, W), float32."""
    if raw.ndim != 4 or raw.shape[1] != len(L4S_BANDS):
        raise ValueError(f"expected bands of shape (N, {len(L4S_BANDS)}, H, W), got {raw.shape}")
    index = {name: i for i, name in enumerate(L4S_BANDS)}
    parts = [raw.astype(np.float32, copy=False)]
    if channels >= 17:
        parts.append(np.stack([raw[:, index[a]] - raw[:, index[b]] for _, a, b in DIFFERENCE_CHANNELS], axis=1))
    out = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    if out.shape[1] != channels:
        raise ValueError(f"unsupported Landslide4Sense channel set {channels}")
    return out.astype(np.float32, copy=False)
