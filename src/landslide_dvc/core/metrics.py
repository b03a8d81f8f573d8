"""Scores of the landslide class (the challenge metric) and test answers; no torch needed."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from landslide_dvc.core.errors import DataError


def precision_recall_f1(labels: np.ndarray, predictions: np.ndarray) -> tuple[float, float, float]:
    """Precision, recall and F1 of the landslide class (label 1); 0 where undefined."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1_value, _ = precision_recall_fscore_support(
        np.asarray(labels).astype(np.int8), np.asarray(predictions).astype(np.int8),
        average="binary", pos_label=1, labels=[0, 1], zero_division=0,
    )
    return float(precision), float(recall), float(f1_value)


def f1(labels: np.ndarray, predictions: np.ndarray) -> float:
    """F1 of the landslide class (the challenge metric); 0 when nothing is predicted positive."""
    return precision_recall_f1(labels, predictions)[2]


def validation_loss(labels: np.ndarray, prob: np.ndarray) -> float:
    """Binary cross-entropy of landslide probabilities (scikit-learn's log loss)."""
    from sklearn.metrics import log_loss

    return float(log_loss(np.asarray(labels).astype(np.int8), np.asarray(prob, dtype=np.float64), labels=[0, 1]))


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
