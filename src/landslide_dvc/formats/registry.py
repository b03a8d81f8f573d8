"""The dataset formats `normalize` reads, by ``data.format``: one entry per format module."""

from __future__ import annotations

from landslide_dvc.core.errors import ParamError
from landslide_dvc.formats.dataset import DatasetFormat
from landslide_dvc.formats.l4s import L4S
from landslide_dvc.formats.zindi import ZINDI

DATASET_FORMATS: dict[str, DatasetFormat] = {fmt.name: fmt for fmt in (ZINDI, L4S)}


def dataset_format(name: str) -> DatasetFormat:
    if name not in DATASET_FORMATS:
        raise ParamError(f"data.format={name!r} is not a dataset format; use one of {', '.join(DATASET_FORMATS)}")
    return DATASET_FORMATS[name]


__all__ = ["DATASET_FORMATS", "dataset_format"]
