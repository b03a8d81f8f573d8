"""The `extract_embeddings` stage: pooled backbone features and FC-head probabilities per fold.

For fold k's model: its training images (originals outside fold k, then fold k's SMOTE
images), its validation fold, and the test set. Written to data/embeddings/fold_{k}.h5 with
one group per part (features, prob, ids, and labels where known).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import torch

from landslide.checkpoint import load_checkpoint, load_fold_model
from landslide.errors import DataError
from landslide.h5data import Split, load_synthetic, open_h5, read_strings
from landslide.io import atomic_paths
from landslide.params import require
from landslide.train import predict, select_device

PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class EmbedParams:
    """`embed:` section."""

    batch_size: int
    device: Literal["auto", "cpu", "cuda"]

    def validate(self) -> None:
        require(self.batch_size >= 1, f"embed.batch_size={self.batch_size} must be >= 1")


@dataclass
class Part:
    """Embeddings of one part (train, val or test) of one fold."""

    features: np.ndarray  # (N, D) float32
    prob: np.ndarray  # (N,) FC-head landslide probability
    ids: list[str]
    labels: np.ndarray | None  # int8; None for the test set
    synthetic: np.ndarray | None = None  # bool, train only: SMOTE image or original


def fold_parts(train: Split, test: Split, fold: int, smote_path: Path) -> dict[str, tuple[np.ndarray, list[str], np.ndarray | None, np.ndarray | None]]:
    """Images, ids, labels and synthetic flags of each part of fold ``fold``."""
    assert train.labels is not None and train.fold is not None
    synthetic = load_synthetic(smote_path, fold)
    in_val = train.fold == fold
    train_idx = np.flatnonzero(~in_val)
    train_images = np.concatenate([train.images[train_idx], synthetic.images]) if len(synthetic) else train.images[train_idx]
    train_ids = [train.ids[i] for i in train_idx] + [f"smote:{a}+{b}" for a, b in zip(synthetic.anchor_id, synthetic.neighbor_id)]
    train_labels = np.concatenate([train.labels[train_idx], np.ones(len(synthetic), np.int8)])
    flags = np.concatenate([np.zeros(len(train_idx), bool), np.ones(len(synthetic), bool)])
    return {
        "train": (train_images, train_ids, train_labels, flags),
        "val": (train.images[in_val], [i for i, v in zip(train.ids, in_val) if v], train.labels[in_val], None),
        "test": (test.images, test.ids, None, None),
    }


def extract_fold(
    model_path: Path, train: Split, test: Split, fold: int, smote_path: Path, params: EmbedParams
) -> dict[str, Part]:
    """Run fold ``fold``'s model over its train/val/test parts."""
    device = select_device(params.device)
    model, meta = load_fold_model(model_path)
    if list(meta["channels"]) != list(train.channels):
        raise DataError(f"{model_path} was trained on other channels than train.h5; rerun `dvc repro`")
    if int(meta["fold"]) != fold:
        raise DataError(f"{model_path} holds the model of fold {meta['fold']}, not {fold}; rerun `dvc repro`")
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    parts = {}
    for name, (images, ids, labels, flags) in fold_parts(train, test, fold, smote_path).items():
        prob, features = predict(
            model, torch.from_numpy(np.ascontiguousarray(images)), int(meta["dim"]), device, params.batch_size,
            with_features=True, progress=f"embeddings fold {fold} {name}",
        )
        assert features is not None
        parts[name] = Part(features=features.astype(np.float32), prob=prob, ids=ids, labels=labels, synthetic=flags)
    return parts


def write_parts(path: Path, parts: dict[str, Part], fold: int) -> None:
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
        for name in PARTS:
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


def run_extract_embeddings(
    params: EmbedParams,
    *,
    train_path: Path,
    test_path: Path,
    smote_path: Path,
    model_paths: list[Path],
    out_paths: list[Path],
) -> None:
    """The stage: one embeddings file per fold model, each written atomically."""
    from landslide.h5data import load_split

    for model_path in model_paths:  # fail before any work if a checkpoint is missing or corrupt
        load_checkpoint(model_path)
    train = load_split(train_path)
    test = load_split(test_path)
    with atomic_paths(*out_paths) as tmps:
        for fold, (model_path, tmp) in enumerate(zip(model_paths, tmps)):
            parts = extract_fold(model_path, train, test, fold, smote_path, params)
            write_parts(tmp, parts, fold)
            print(f"extract_embeddings: fold {fold}: {parts['train'].features.shape[1]}-d features")
