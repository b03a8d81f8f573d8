"""What a dataset format gives `normalize`: one interface, one module per format (``formats.registry``).

A format module reads its own files and returns ``FormatData``: both splits' channel images
(derived, not yet scaled), IDs, the training labels that folds stratify on, what its files add to
each split (masks, the submission's rows and header, the split names) and the attributes that
describe its layout. `normalize` then scales, assigns folds and writes train.h5 and test.h5 the
same way for every format. Adding a dataset is a module with a ``DatasetFormat`` entry and its
params section.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SplitData:
    """One split as normalize writes it, before scaling."""

    images: np.ndarray  # (N, C, H, W) float32: the derived channels
    ids: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)  # written after the shared attributes, in this order
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # datasets written after images and ids, in this order


@dataclass(frozen=True)
class FormatData:
    """A dataset as read by its format."""

    train: SplitData
    test: SplitData
    train_labels: np.ndarray  # (N,) 0/1: what the folds stratify on
    labels_source: str  # names the labels in errors (a file, or masks with their threshold)
    test_labels: np.ndarray | None  # the answers, where the dataset has them
    channels: list[str]  # channel names, in order
    layout: dict[str, Any]  # the format's attributes on both files (between the scaling and the folds)
    n_submission_rows: int
    notices: tuple[str, ...] = ()  # accepted quirks, one line each


@dataclass(frozen=True)
class DatasetFormat:
    """One dataset format: its name (``data.format``), the channel sets and scalings it supports, its own
    params section (or none), and its reader."""

    name: str
    channel_sets: tuple[int, ...]  # normalize.channels values it has
    ssl4eo: bool  # whether normalize.method: ssl4eo applies (DN / 10,000 recoverable)
    ssl4eo_refusal: str  # why not, where it does not
    params_section: str | None  # its own params.yaml section, read by normalize
    params_class: type | None
    read: Callable[[Path, int, Any, float], FormatData]  # (root, normalize.channels, own params, data.optical_scale)


__all__ = ["DatasetFormat", "FormatData", "SplitData"]
