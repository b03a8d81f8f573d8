"""The `fit_head@HEAD` stages, one per entry of `core.heads.HEAD_KINDS`: classifiers on the backbone
embeddings (paper Table 3).

Per fold, a head is fitted on the fold's training embeddings (originals + SMOTE), scores its
validation fold (out-of-fold, OOF) and the test set; test scores are averaged over the folds.
`fc` is the baseline: the fine-tuned network's own head, evaluated under the same protocol.
How each head is fitted and scored is its registry entry's job; the SVM score is the logistic of
SVC's decision function, so the default 0.5 threshold is SVC's own decision (decision = 0);
LightGBM's and logistic regression's scores are their probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.metrics import precision_recall_curve

from landslide_dvc.core.heads import HEAD_KINDS, Head, fit_head_model, head_scores
from landslide_dvc.core.io import atomic_paths
from landslide_dvc.core.metrics import best_threshold, read_answers, scores_metrics
from landslide_dvc.core.params import params_section, require
from landslide_dvc.pipeline.crossval import CrossValResult, Fold, cross_validate, write_predictions
from landslide_dvc.pipeline.h5data import Part, load_parts


@params_section
class HeadParams:
    """`head:` section (Table 3): the shared keys, then each head's own (`core.heads.HEAD_KINDS`)."""

    kernel: Literal["rbf", "linear", "poly", "sigmoid"]  # svm: SVC kernel (paper: rbf)
    C: float  # svm: SVC regularisation (paper's best: 0.1)
    gamma: float | Literal["scale", "auto"]  # svm
    threshold: float | Literal["oof"]  # 0.5, or "oof": the F1-optimal threshold on OOF scores
    seed: int  # lgbm
    lgbm: dict[str, Any]  # lgbm: passed to lightgbm.LGBMClassifier (deterministic settings are fixed)
    logreg: dict[str, Any]  # logreg: passed to sklearn's LogisticRegression (solver fixed: lbfgs)

    def validate(self) -> None:
        require(
            self.threshold == "oof" or 0.0 < float(self.threshold) < 1.0,
            f"head.threshold={self.threshold} must be in (0, 1) or 'oof'",
        )
        for kind in HEAD_KINDS.values():
            kind.check(self)


def fit_model(head: Head, params: Any, train: Part) -> Any:
    """The head fitted on one fold's training embeddings (None for fc): `core.heads`' own fit."""
    assert train.labels is not None
    return fit_head_model(head, params, train.features, train.labels)


def model_scores(head: Head, model: Any, part: Part) -> np.ndarray:
    """Scores of a fitted head (``fit_model``) on one part's embeddings."""
    return head_scores(head, model, part.features, part.prob)


def fit_predict(head: Head, params: Any, train: Part, others: list[Part]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Fit ``head`` on ``train`` and score it and every part in ``others``."""
    model = fit_model(head, params, train)
    return model_scores(head, model, train), [model_scores(head, model, p) for p in others]


def embedding_folds(embedding_paths: list[Path]) -> Iterator[Fold]:
    """The folds as `extract_embeddings` wrote them (originals + SMOTE to fit on), read one at a time."""
    for path in embedding_paths:
        parts = load_parts(path)
        yield Fold(parts["train"], parts["val"], parts["test"], source=str(path))


def fit_all_folds(head: Head, params: HeadParams, embedding_paths: list[Path]) -> CrossValResult:
    """Fit/score the head fold by fold; OOF over all folds, test scores averaged."""
    return cross_validate(
        embedding_folds(embedding_paths), partial(fit_predict, head, params), producer="extract_embeddings"
    )


def head_metrics(
    head: str, threshold_setting: float | str, result: CrossValResult, answers: np.ndarray | None
) -> dict[str, Any]:
    """Table 3 figures: CV (OOF) F1/precision/recall, train F1, test F1 when answers exist; both thresholds.

    ``threshold_setting`` is a params section's `threshold`: a number, or "oof" (F1-optimal out of fold).
    """
    oof_threshold = best_threshold(result.oof_labels, result.oof_scores)
    threshold = oof_threshold if threshold_setting == "oof" else float(threshold_setting)
    cv = scores_metrics(result.oof_labels, result.oof_scores, threshold)
    cv["f1_at_0.5"] = scores_metrics(result.oof_labels, result.oof_scores, 0.5)["f1"]
    cv["f1_at_oof_threshold"] = scores_metrics(result.oof_labels, result.oof_scores, oof_threshold)["f1"]
    metrics: dict[str, Any] = {
        "head": head,
        "threshold": threshold,
        "threshold_mode": "oof" if threshold_setting == "oof" else "fixed",
        "oof_threshold": oof_threshold,
        "cv": cv,
        "train": {"f1": float(np.mean(result.train_f1))},
        "n_oof": len(result.oof_ids),
        "n_test": len(result.test_ids),
        "test_predicted_positive_rate": float(np.mean(result.test_scores >= threshold)),
    }
    if answers is not None:
        test = scores_metrics(answers, result.test_scores, threshold)
        test["f1_at_0.5"] = scores_metrics(answers, result.test_scores, 0.5)["f1"]
        test["f1_at_oof_threshold"] = scores_metrics(answers, result.test_scores, oof_threshold)["f1"]
        metrics["test"] = test
    return metrics


def confusion_rows(labels: np.ndarray, scores: np.ndarray, threshold: float) -> list[dict[str, str]]:
    names = np.array(["no landslide", "landslide"])
    predicted = (scores >= threshold).astype(int)
    return [{"actual": a, "predicted": p} for a, p in zip(names[labels.astype(int)], names[predicted])]


def pr_rows(labels: np.ndarray, scores: np.ndarray, max_points: int = 200) -> list[dict[str, float]]:
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    keep = np.unique(np.linspace(0, len(thresholds) - 1, min(max_points, len(thresholds))).round().astype(int))
    return [
        {"recall": float(recall[i]), "precision": float(precision[i]), "threshold": float(thresholds[i])} for i in keep
    ]


def run_fit_head(
    head: Head,
    params: HeadParams,
    *,
    embedding_paths: list[Path],
    answers_path: Path,
    out_predictions: Path,
    out_metrics: Path,
    out_confusion: Path,
    out_pr: Path,
) -> dict[str, Any]:
    """The stage: fit, score, and write predictions, metrics and plots together."""
    result = fit_all_folds(head, params, embedding_paths)
    answers = read_answers(answers_path, result.test_ids)
    metrics = head_metrics(head, params.threshold, result, answers)
    with atomic_paths(out_predictions, out_metrics, out_confusion, out_pr) as (tmp_pred, tmp_metrics, tmp_conf, tmp_pr):
        write_predictions(tmp_pred, result, head=head, threshold=metrics["threshold"])
        tmp_metrics.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        tmp_conf.write_text(json.dumps(confusion_rows(result.oof_labels, result.oof_scores, metrics["threshold"])) + "\n")
        tmp_pr.write_text(json.dumps(pr_rows(result.oof_labels, result.oof_scores), indent=1) + "\n")
    return metrics
