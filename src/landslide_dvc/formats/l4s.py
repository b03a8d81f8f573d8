"""Landslide4Sense 2022 data in: its two HDF5 layouts, pixel masks, image-level labels, channels.

Layouts (docs/data-formats.md), told apart by their top folders:
  release       ``TrainData/img/image_N.h5`` (dataset ``img``, H x W x 14, channels last) and
                ``TrainData/mask/mask_N.h5`` (dataset ``mask``, H x W, 0/1); ``ValidData/`` and
                ``TestData/`` the same, their ``mask/`` folders optional (the first release had
                none, the later full release has them);
  Hugging Face  ``ibm-nasa-geospatial/Landslide4sense``: ``images/{train,validation,test}/image_N.h5``
                and ``annotations/{train,validation,test}/mask_N.h5``, the same files and datasets.
The Hugging Face splits train, validation and test are read as TrainData, ValidData and TestData,
so nothing downstream knows which layout was read. A folder with both layouts or neither is
refused. Patch size and band count are read from the files (128 x 128 x 14 in the
release, 32 x 32 in torchgeo's test fixture). Everything broken is a DataError naming the file
and the fix, raised before anything is written; the rules are the same for both layouts.

Bands: Sentinel-2 B1-B12 (no B8A), slope, DEM, stored already rescaled (means near 0, standard
deviations near 1). The channel sets derived from them (14, or 17 with band differences) are
`landslide_dvc.core.l4s_channels`, shared with `landslide-dvc predict`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from landslide_dvc.core.bands import L4S_BANDS
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.l4s_channels import derive_l4s_channels, l4s_channel_names
from landslide_dvc.core.params import params_section, require
from landslide_dvc.formats.dataset import DatasetFormat, FormatData, SplitData

TRAIN_SPLIT = "TrainData"
VALID_SPLIT = "ValidData"
TEST_SPLIT = "TestData"
SPLITS = (TRAIN_SPLIT, VALID_SPLIT, TEST_SPLIT)
IMAGE_DIR, MASK_DIR = "img", "mask"
IMAGE_KEY, MASK_KEY = "img", "mask"
RELEASE, HUGGING_FACE = "release", "huggingface"
L4SLayout = Literal["release", "huggingface"]
HF_IMAGE_DIR, HF_MASK_DIR = "images", "annotations"
HF_SPLITS = {TRAIN_SPLIT: "train", VALID_SPLIT: "validation", TEST_SPLIT: "test"}
_IMAGE_FILE = re.compile(r"^image_(\d+)\.h5$")
_MASK_FILE = re.compile(r"^mask_(\d+)\.h5$")


@params_section
class L4SParams:
    """`l4s:` section (read when data.format is l4s)."""

    min_pixels: int  # landslide pixels that make a patch a landslide patch (image-level label)
    test_split: Literal["ValidData", "TestData"]  # the split written as test.h5 (scored when it has masks)

    def validate(self) -> None:
        require(self.min_pixels >= 1, f"l4s.min_pixels={self.min_pixels} must be >= 1")


@dataclass
class L4SSplit:
    """One split as read: IDs (``image_N``), images (N, bands, H, W) float32, masks (N, H, W) uint8 or None,
    and the folder it came from (``root/TrainData``; ``root/images/train`` in the Hugging Face layout)."""

    ids: list[str]
    images: np.ndarray
    masks: np.ndarray | None
    folder: Path


@dataclass(frozen=True)
class SplitFolders:
    """Where one split's files lie in a layout: the split's folder (named in messages), its images, its masks."""

    layout: L4SLayout
    split: str  # the release's name: TrainData, ValidData or TestData
    folder: Path
    images: Path
    masks: Path


def _folders(names: Sequence[str]) -> str:
    return ", ".join(f"{name}/" for name in names)


def detect_layout(root: Path) -> L4SLayout:
    """The layout of ``root`` from its top folders; both layouts or neither is a DataError."""
    release = [name for name in SPLITS if (root / name).is_dir()]
    hugging_face = [name for name in (HF_IMAGE_DIR, HF_MASK_DIR) if (root / name).is_dir()]
    if release and hugging_face:
        raise DataError(
            f"{root} holds both Landslide4Sense layouts (release: {_folders(release)}; Hugging Face: "
            f"{_folders(hugging_face)}); keep one: move the other out of data.dir"
        )
    if hugging_face:
        return HUGGING_FACE
    if release:
        return RELEASE
    raise DataError(
        f"{root} holds no Landslide4Sense layout (looked for the release's {_folders(SPLITS)} and the Hugging "
        f"Face copy's {_folders((HF_IMAGE_DIR, HF_MASK_DIR))}); point data.dir at the folder that holds them"
    )


def split_folders(root: Path, split: str, layout: L4SLayout) -> SplitFolders:
    """The folders of ``split`` (a release name) in ``layout``: train -> TrainData, validation -> ValidData, ..."""
    if layout == RELEASE:
        return SplitFolders(layout, split, root / split, root / split / IMAGE_DIR, root / split / MASK_DIR)
    if split not in HF_SPLITS:
        raise ValueError(f"unknown Landslide4Sense split {split!r}; use one of {', '.join(SPLITS)}")
    name = HF_SPLITS[split]
    images = root / HF_IMAGE_DIR / name
    return SplitFolders(layout, split, images, images, root / HF_MASK_DIR / name)


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


def _missing_images(folders: SplitFolders) -> DataError:
    if folders.layout == RELEASE:
        return DataError(
            f"{folders.images} not found; data.dir must hold the Landslide4Sense layout "
            f"({folders.split}/{IMAGE_DIR}/image_N.h5): point data.dir at the folder that holds TrainData/"
        )
    return DataError(
        f"{folders.images} not found; data.dir holds the Hugging Face layout, which keeps {folders.split} in "
        f"{HF_IMAGE_DIR}/{folders.images.name}/image_N.h5: add the split's images or point data.dir at a complete copy"
    )


def _image_files(folders: SplitFolders) -> dict[int, Path]:
    """{N: image path} of the split; a missing or empty image folder is a DataError."""
    if not folders.images.is_dir():
        raise _missing_images(folders)
    images = _numbered(folders.images, _IMAGE_FILE, "image_N.h5")
    if not images:
        raise DataError(f"{folders.images} holds no image_N.h5 files; add the split's images")
    return images


def _check_pairs(folders: SplitFolders, images: dict[int, Path], masks: dict[int, Path]) -> None:
    """Every image has its mask and every mask its image."""
    missing = sorted(set(images) - set(masks))
    if missing:
        raise DataError(
            f"{folders.masks / f'mask_{missing[0]}.h5'} not found ({len(missing)} of {len(images)} images have "
            f"no mask); add the masks or remove those images"
        )
    orphans = sorted(set(masks) - set(images))
    if orphans:
        raise DataError(
            f"{masks[orphans[0]]} has no image ({folders.images / f'image_{orphans[0]}.h5'} not found); "
            f"add the image or remove the mask"
        )


def _mask_files(folders: SplitFolders, images: dict[int, Path], required: bool) -> dict[int, Path] | None:
    """{N: mask path} paired with ``images``, or None when the split has no mask folder (and needs none)."""
    if not folders.masks.is_dir():
        if required:
            raise DataError(f"{folders.masks} not found; the training split needs a mask_N.h5 for every image_N.h5")
        return None
    masks = _numbered(folders.masks, _MASK_FILE, "mask_N.h5")
    _check_pairs(folders, images, masks)
    return masks


def _read_split(folders: SplitFolders, images: dict[int, Path], masks: dict[int, Path] | None) -> L4SSplit:
    """Read and check every image (and mask) in image-number order; the first image sets size and bands."""
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
    return L4SSplit(ids=[f"image_{n}" for n in numbers], images=out, masks=out_masks, folder=folders.folder)


def load_l4s_split(root: Path, split: str, *, masks_required: bool) -> L4SSplit:
    """Read split ``split`` (TrainData, ValidData, TestData) of ``root`` in either layout: its images and,
    when present or required, its masks, validated, in image-number order."""
    folders = split_folders(root, split, detect_layout(root))
    images = _image_files(folders)
    masks = _mask_files(folders, images, masks_required)
    return _read_split(folders, images, masks)


def labels_from_masks(masks: np.ndarray, min_pixels: int) -> np.ndarray:
    """Image-level labels (N,) int8: 1 where a mask (N, H, W) has at least ``min_pixels`` landslide pixels."""
    return (masks.reshape(len(masks), -1).sum(axis=1, dtype=np.int64) >= min_pixels).astype(np.int8)


def read_for_normalize(root: Path, channels: int, own_params: L4SParams, optical_scale: float) -> FormatData:
    """TrainData and the split ``l4s.test_split`` for `normalize`: channels, labels from the masks, the masks."""
    train = load_l4s_split(root, TRAIN_SPLIT, masks_required=True)
    test = load_l4s_split(root, own_params.test_split, masks_required=False)
    if test.images.shape[1:] != train.images.shape[1:]:
        raise DataError(
            f"{test.folder}: images of shape {test.images.shape[1:]} (bands, H, W) differ from "
            f"{train.folder}'s {train.images.shape[1:]}; both splits must come from the same release"
        )
    assert train.masks is not None  # masks_required
    labels = labels_from_masks(train.masks, own_params.min_pixels)
    test_extra: dict[str, np.ndarray] = {"submission_ids": np.array(test.ids, dtype=object)}
    test_labels = None
    if test.masks is not None:
        test_extra["masks"] = test.masks
        test_labels = labels_from_masks(test.masks, own_params.min_pixels)
    train_images = derive_l4s_channels(train.images, channels)  # type: ignore[arg-type]
    return FormatData(
        train=SplitData(train_images, train.ids, attrs={"split": TRAIN_SPLIT}, extra={"masks": train.masks}),
        test=SplitData(derive_l4s_channels(test.images, channels), test.ids,  # type: ignore[arg-type]
                       attrs={"split": own_params.test_split, "submission_columns": ["ID", "Target"]}, extra=test_extra),
        train_labels=labels,
        labels_source=f"{train.folder} (labels from masks with >= {own_params.min_pixels} landslide pixels)",
        test_labels=test_labels,  # a split without masks has no answers
        channels=l4s_channel_names(channels),  # type: ignore[arg-type]
        layout={"format": "l4s", "min_pixels": own_params.min_pixels, "patch_size": int(train_images.shape[-1])},
        n_submission_rows=len(test.ids),
    )


L4S = DatasetFormat(
    name="l4s", channel_sets=(14, 17), ssl4eo=False,
    ssl4eo_refusal="the release is already rescaled with unpublished constants, so DN / 10,000 cannot be recovered",
    params_section="l4s", params_class=L4SParams, read=read_for_normalize,
)
