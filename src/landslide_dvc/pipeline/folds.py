"""Assembling one cross-validation fold from the normalised training set and its SMOTE images.

Fold k trains on the original images outside fold k plus fold k's SMOTE images and validates on
fold k. Training and embedding extraction both use this one assembly, so the images a fold model
was trained on are exactly the ones its heads are fitted on.
"""

from __future__ import annotations

import numpy as np
import torch

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.training import FoldData
from landslide_dvc.pipeline.h5data import Split, SyntheticSet


def fold_data(train: Split, synthetic: SyntheticSet, fold: int) -> FoldData:
    """Assemble fold ``fold``; refuses any overlap between validation and training sources."""
    assert train.labels is not None and train.fold is not None
    if not (train.fold == fold).any():
        raise DataError(f"fold {fold} has no images in train.h5 (folds 0..{int(train.fold.max())}); check folds.ids")
    in_val = train.fold == fold
    val_ids = [i for i, v in zip(train.ids, in_val) if v]
    val_set = set(val_ids)
    leaked = [a for a, b in zip(synthetic.anchor_id, synthetic.neighbor_id) if a in val_set or b in val_set]
    if leaked:
        raise DataError(
            f"SMOTE image made from validation image {leaked[0]} of fold {fold}; rerun `dvc repro -f smote`"
        )
    val_labels = train.labels[in_val]
    if not (val_labels == 1).any():
        raise DataError(f"fold {fold} has no landslide images to validate on; use more data or fewer folds")
    train_idx = np.flatnonzero(~in_val)
    images = np.concatenate([train.images[train_idx], synthetic.images]) if len(synthetic) else train.images[train_idx]
    labels = np.concatenate([train.labels[train_idx], np.ones(len(synthetic), dtype=np.int8)])
    if not (labels == 1).any():
        raise DataError(f"the training set of fold {fold} has no landslide images; use more data or fewer folds")
    return FoldData(
        train_images=torch.from_numpy(np.ascontiguousarray(images)),
        train_labels=torch.from_numpy(labels.astype(np.int64)),
        n_original=len(train_idx),
        train_ids=[train.ids[i] for i in train_idx] + [f"smote:{a}+{b}" for a, b in zip(synthetic.anchor_id, synthetic.neighbor_id)],
        val_images=torch.from_numpy(np.ascontiguousarray(train.images[in_val])),
        val_labels=val_labels.astype(np.int8),
        val_ids=val_ids,
        channels=list(train.channels),
    )
