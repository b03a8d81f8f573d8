"""Cross-validated predictions, shared by `fit_head` and `stats_baseline`: the fold loop and its file.

Per fold, a model is fitted on the fold's training part only and scores its held-out part (the
out-of-fold, OOF, scores) and the test set; every training image is held out by exactly one fold,
and the test scores are averaged over the folds. The predictions file holds both, with the
per-fold test scores that `export` checks its refitted heads against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.metrics import f1
from landslide_dvc.pipeline.h5data import Part


class Fold(NamedTuple):
    """One fold's parts: the model is fitted on ``train`` and scores ``val`` (held out) and ``test``."""

    train: Part
    val: Part
    test: Part
    source: str  # where the fold was read from, for error messages


# Fits a model on its first argument and returns its scores there and on each of the others.
FitPredict = Callable[[Part, list[Part]], tuple[np.ndarray, list[np.ndarray]]]


@dataclass
class CrossValResult:
    """Everything one model produced over all folds."""

    oof_ids: list[str]
    oof_labels: np.ndarray
    oof_scores: np.ndarray
    oof_fold: np.ndarray
    test_ids: list[str]
    test_scores: np.ndarray  # mean over folds
    test_fold_scores: np.ndarray  # (N, K)
    train_f1: list[float]  # per fold, at 0.5 on the fold's original training images


def cross_validate(folds: Iterable[Fold], fit_predict: FitPredict, *, producer: str) -> CrossValResult:
    """Fit and score fold by fold; OOF over all folds, test scores averaged over them.

    ``folds`` may be a generator, so one fold at a time is in memory. ``producer`` is the stage
    whose rerun fixes inconsistent folds (named in the error).
    """
    oof_ids: list[str] = []
    oof_labels, oof_scores, oof_fold, test_scores, train_f1 = [], [], [], [], []
    test_ids: list[str] | None = None
    for k, fold in enumerate(folds):
        # Step 1: one model per fold, never fitted on the images it scores out of fold.
        train_scores, (val_scores, fold_test_scores) = fit_predict(fold.train, [fold.val, fold.test])
        # Step 2: every fold must score the same test images, or their mean is meaningless.
        if test_ids is None:
            test_ids = fold.test.ids
        elif fold.test.ids != test_ids:
            raise DataError(f"{fold.source} lists other test IDs than fold 0; rerun `dvc repro -f {producer}`")
        # Step 3: training F1 on the original images only (SMOTE's are interpolations, not observations).
        assert fold.train.labels is not None and fold.val.labels is not None
        train = fold.train
        original = ~train.synthetic if train.synthetic is not None else np.ones(len(train.ids), bool)
        train_f1.append(f1(train.labels[original], (train_scores[original] >= 0.5).astype(np.int8)))
        # Step 4: collect the held-out scores with their fold.
        oof_ids += fold.val.ids
        oof_labels.append(fold.val.labels)
        oof_scores.append(val_scores)
        oof_fold.append(np.full(len(fold.val.ids), k, np.int8))
        test_scores.append(fold_test_scores)
    assert test_ids is not None, "no folds"
    if len(set(oof_ids)) != len(oof_ids):
        raise DataError("an image is in the validation part of two folds; rerun `dvc repro -f normalize`")
    fold_matrix = np.stack(test_scores, axis=1)
    return CrossValResult(
        oof_ids=oof_ids,
        oof_labels=np.concatenate(oof_labels),
        oof_scores=np.concatenate(oof_scores),
        oof_fold=np.concatenate(oof_fold),
        test_ids=test_ids,
        test_scores=fold_matrix.mean(axis=1),
        test_fold_scores=fold_matrix,
        train_f1=train_f1,
    )


def write_predictions(
    path: Path, result: CrossValResult, *, head: str, threshold: float, attrs: Mapping[str, Any] | None = None
) -> None:
    """The predictions file: attributes head, threshold (then ``attrs``) and the 7 datasets.

    Attributes and datasets are created in a fixed order without timestamps, so the same result
    gives the same bytes (DVC's hash of the file).
    """
    with h5py.File(path, "w") as h5:
        h5.attrs["head"] = head
        h5.attrs["threshold"] = threshold
        for key, value in (attrs or {}).items():
            h5.attrs[key] = value
        datasets = {
            "oof/ids": np.array(result.oof_ids, dtype=object),
            "oof/labels": result.oof_labels,
            "oof/score": result.oof_scores,
            "oof/fold": result.oof_fold,
            "test/ids": np.array(result.test_ids, dtype=object),
            "test/score": result.test_scores,
            "test/fold_scores": result.test_fold_scores,
        }
        for name, values in datasets.items():
            dtype = h5py.string_dtype() if values.dtype == object else None
            h5.create_dataset(name, data=values, dtype=dtype, track_times=False)
