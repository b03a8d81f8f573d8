"""The `extract_embeddings` stage: pooled backbone features and FC-head probabilities per fold.

For fold k's model: its training images (originals outside fold k, then fold k's SMOTE
images), its validation fold, and the test set. Written to data/embeddings/fold_{k}.h5 with
one group per part (features, prob, ids, and labels where known). With ``embed.tta`` > 1 the
probabilities and features are means over that many dihedral views of each image
(landslide_dvc.core.inference), as `landslide-dvc predict` computes them with the bundle.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from landslide_dvc.core.checkpoint import load_checkpoint, load_fold_model
from landslide_dvc.core.devices import prepare_model, select_device
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.inference import EmbedParams, predict
from landslide_dvc.core.io import atomic_paths
from landslide_dvc.core.runtime import use_threads
from landslide_dvc.pipeline.folds import fold_data
from landslide_dvc.pipeline.h5data import Part, Split, load_synthetic, write_parts


def fold_parts(
    train: Split, test: Split, fold: int, smote_path: Path
) -> dict[str, tuple[torch.Tensor, list[str], np.ndarray | None, np.ndarray | None]]:
    """Images, ids, labels and synthetic flags of each part of fold ``fold`` (the training fold's view)."""
    data = fold_data(train, load_synthetic(smote_path, fold), fold)
    flags = np.arange(len(data.train_ids)) >= data.n_original
    return {
        "train": (data.train_images, data.train_ids, data.train_labels.numpy().astype(np.int8), flags),
        "val": (data.val_images, data.val_ids, data.val_labels, None),
        "test": (torch.from_numpy(test.images), test.ids, None, None),
    }


def extract_fold(
    model_path: Path, train: Split, test: Split, fold: int, smote_path: Path, params: EmbedParams
) -> dict[str, Part]:
    """Run fold ``fold``'s model over its train/val/test parts."""
    device = select_device(params.device, "embed.device")
    use_threads(params.threads)
    model, meta = load_fold_model(model_path)
    if list(meta["channels"]) != list(train.channels):
        raise DataError(f"{model_path} was trained on other channels than train.h5; rerun `dvc repro`")
    if int(meta["fold"]) != fold:
        raise DataError(f"{model_path} holds the model of fold {meta['fold']}, not {fold}; rerun `dvc repro`")
    model = prepare_model(model, device)
    parts = {}
    for name, (images, ids, labels, flags) in fold_parts(train, test, fold, smote_path).items():
        prob, features = predict(
            model, images, int(meta["dim"]), device, params.batch_size,
            with_features=True, progress=f"embeddings fold {fold} {name}", tta=params.tta,
        )
        assert features is not None
        parts[name] = Part(features=features.astype(np.float32), prob=prob, ids=ids, labels=labels, synthetic=flags)
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
    from landslide_dvc.pipeline.h5data import load_split

    for model_path in model_paths:  # fail before any work if a checkpoint is missing or corrupt
        load_checkpoint(model_path)
    train = load_split(train_path)
    test = load_split(test_path)
    with atomic_paths(*out_paths) as tmps:
        for fold, (model_path, tmp) in enumerate(zip(model_paths, tmps)):
            parts = extract_fold(model_path, train, test, fold, smote_path, params)
            write_parts(tmp, parts, fold)
            print(f"extract_embeddings: fold {fold}: {parts['train'].features.shape[1]}-d features")
