"""The `fit_head@{fc,svm,lgbm}` stages: classifiers on the backbone embeddings (paper Table 3).

Per fold, a head is fitted on the fold's training embeddings (originals + SMOTE), scores its
validation fold (out-of-fold, OOF) and the test set; test scores are averaged over the folds.
`fc` is the baseline: the fine-tuned network's own head, evaluated under the same protocol.
The SVM score is the logistic of SVC's decision function, so the default 0.5 threshold is
SVC's own decision (decision = 0); LightGBM's score is its probability.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.metrics import precision_recall_curve

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.heads import Head, score_svm
from landslide_dvc.core.io import atomic_paths
from landslide_dvc.core.metrics import best_threshold, read_answers, scores_metrics
from landslide_dvc.core.params import params_section, require
from landslide_dvc.pipeline.crossval import CrossValResult, Fold, cross_validate, write_predictions
from landslide_dvc.pipeline.h5data import Part, load_parts
from landslide_dvc.pipeline.lgbm import check_lgbm_params, lgbm_classifier


@params_section
class HeadParams:
    """`head:` section (Table 3)."""

    kernel: Literal["rbf", "linear", "poly", "sigmoid"]  # SVC kernel (paper: rbf)
    C: float  # SVC regularisation (paper's best: 0.1)
    gamma: float | Literal["scale", "auto"]
    threshold: float | Literal["oof"]  # 0.5, or "oof": the F1-optimal threshold on OOF scores
    seed: int
    lgbm: dict[str, Any]  # passed to lightgbm.LGBMClassifier (deterministic settings are fixed)

    def validate(self) -> None:
        require(self.C > 0, f"head.C={self.C} must be > 0")
        require(isinstance(self.gamma, str) or self.gamma > 0, f"head.gamma={self.gamma} must be > 0, 'scale' or 'auto'")
        require(
            self.threshold == "oof" or 0.0 < float(self.threshold) < 1.0,
            f"head.threshold={self.threshold} must be in (0, 1) or 'oof'",
        )
        check_lgbm_params(self.lgbm, "head")


def fit_model(head: Head, params: HeadParams, train: Part) -> Any:
    """The fitted svm (StandardScaler + SVC pipeline) or lgbm (LGBMClassifier) head; None for fc."""
    if head == "fc":
        return None
    assert train.labels is not None
    if len(np.unique(train.labels)) < 2:
        raise DataError("a fold's training embeddings hold a single class; a head needs both classes")
    if head == "svm":
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVC

        model = make_pipeline(StandardScaler(), SVC(kernel=params.kernel, C=params.C, gamma=params.gamma))
        return model.fit(train.features, train.labels)
    model = lgbm_classifier(params.lgbm, params.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # feature-name warnings on numpy input
        return model.fit(train.features, train.labels)


def model_scores(head: Head, model: Any, part: Part) -> np.ndarray:
    """Scores of a fitted head (``fit_model``) on one part's embeddings."""
    if head == "fc":
        return part.prob
    if head == "svm":
        return score_svm(model.decision_function(part.features))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return model.predict_proba(part.features)[:, 1]


def fit_predict(head: Head, params: HeadParams, train: Part, others: list[Part]) -> tuple[np.ndarray, list[np.ndarray]]:
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


def head_metrics(head: Head, params: HeadParams, result: CrossValResult, answers: np.ndarray | None) -> dict[str, Any]:
    """Table 3 figures: CV (OOF) F1/precision/recall, train F1, test F1 when answers exist; both thresholds."""
    oof_threshold = best_threshold(result.oof_labels, result.oof_scores)
    threshold = oof_threshold if params.threshold == "oof" else float(params.threshold)
    cv = scores_metrics(result.oof_labels, result.oof_scores, threshold)
    cv["f1_at_0.5"] = scores_metrics(result.oof_labels, result.oof_scores, 0.5)["f1"]
    cv["f1_at_oof_threshold"] = scores_metrics(result.oof_labels, result.oof_scores, oof_threshold)["f1"]
    metrics: dict[str, Any] = {
        "head": head,
        "threshold": threshold,
        "threshold_mode": "oof" if params.threshold == "oof" else "fixed",
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
    metrics = head_metrics(head, params, result, answers)
    with atomic_paths(out_predictions, out_metrics, out_confusion, out_pr) as (tmp_pred, tmp_metrics, tmp_conf, tmp_pr):
        write_predictions(tmp_pred, result, head=head, threshold=metrics["threshold"])
        tmp_metrics.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        tmp_conf.write_text(json.dumps(confusion_rows(result.oof_labels, result.oof_scores, metrics["threshold"])) + "\n")
        tmp_pr.write_text(json.dumps(pr_rows(result.oof_labels, result.oof_scores), indent=1) + "\n")
    return metrics
