"""Scores of the landslide class (the challenge metric) and test answers; no torch needed."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from landslide.errors import DataError


def precision_recall_f1(labels: np.ndarray, predictions: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 of the landslide class (label 1); 0 where undefined.

    Plain counting (sklearn's definitions with zero_division=0), so the scoring stages start
    without importing scikit-learn.
    """
    truth = np.asarray(labels).astype(bool)
    predicted = np.asarray(predictions).astype(bool)
    tp = int(np.count_nonzero(truth & predicted))
    fp = int(np.count_nonzero(~truth & predicted))
    fn = int(np.count_nonzero(truth & ~predicted))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1_value = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return precision, recall, f1_value


def f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    """F1 of the landslide class (the challenge metric); 0 when nothing is predicted positive."""
    return precision_recall_f1(labels, predictions)[2]


def scores_metrics(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """F1, precision and recall when predicting landslide for score >= threshold."""
    precision, recall, f1_value = precision_recall_f1(labels, np.asarray(scores) >= threshold)
    return {"f1": f1_value, "precision": precision, "recall": recall}


def best_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold maximising F1 on (labels, scores): midpoint between neighbouring scores."""
    from sklearn.metrics import precision_recall_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1s = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)[:-1]
    if len(thresholds) == 0:
        return 0.5
    i = int(np.argmax(f1s))
    # Predict positive when score >= t; place t between this score and the next lower one.
    lower = scores[scores < thresholds[i]]
    return float((thresholds[i] + lower.max()) / 2) if len(lower) else float(thresholds[i])


def read_answers(path: Path, test_ids: list[str]) -> np.ndarray | None:
    """Test answers from the normalize stage's answers CSV, or None when the dataset has none."""
    if not path.is_file():
        raise DataError(f"{path} not found; run `dvc repro normalize`")
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    answers = {r["ID"]: int(r["label"]) for r in rows}
    if set(answers) != set(test_ids):
        raise DataError(f"{path} does not cover the test IDs of the embeddings; rerun `dvc repro`")
    return np.array([answers[i] for i in test_ids], dtype=np.int8)
