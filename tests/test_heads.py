"""Heads on embeddings: separable data is learnt, OOF covers every image once, thresholds, params."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from landslide_dvc.core.errors import ParamError
from landslide_dvc.core.heads import HEAD_KINDS, HEADS, check_head, head_file, head_scores, load_head, save_head
from landslide_dvc.core.metrics import best_threshold, f1
from landslide_dvc.core.params import parse_section
from landslide_dvc.pipeline.fit_head import HeadParams, fit_all_folds, head_metrics, run_fit_head
from landslide_dvc.pipeline.h5data import Part, write_parts

PARAMS = HeadParams(
    kernel="rbf", C=1.0, gamma="scale", threshold=0.5, seed=0,
    lgbm={"n_estimators": 50, "learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 5, "n_jobs": 1},
    logreg={"C": 1.0, "max_iter": 1000},
)


def make_embeddings(tmp_path: Path, n: int = 150, n_splits: int = 3, separation: float = 3.0) -> tuple[list[Path], dict]:
    """Gaussian blobs: landslides shifted along 4 of 16 dimensions; FC probs informative too."""
    rng = np.random.default_rng(0)
    labels = (rng.random(n) < 0.3).astype(np.int8)
    ids = [f"ID_{i:04d}" for i in range(n)]
    fold = np.arange(n) % n_splits
    features = rng.normal(size=(n, 16)).astype(np.float32)
    features[labels == 1, :4] += separation
    test_labels = (rng.random(40) < 0.3).astype(np.int8)
    test_features = rng.normal(size=(40, 16)).astype(np.float32)
    test_features[test_labels == 1, :4] += separation
    prob = 1 / (1 + np.exp(-(features[:, :4].sum(1) - 2 * separation)))
    test_prob = 1 / (1 + np.exp(-(test_features[:, :4].sum(1) - 2 * separation)))
    paths = []
    for k in range(n_splits):
        tr, va = fold != k, fold == k
        parts = {
            "train": Part(features[tr], prob[tr], [i for i, t in zip(ids, tr) if t], labels[tr], np.zeros(tr.sum(), bool)),
            "val": Part(features[va], prob[va], [i for i, v in zip(ids, va) if v], labels[va]),
            "test": Part(test_features + 0.01 * k, test_prob, [f"T_{i}" for i in range(40)], None),
        }
        path = tmp_path / f"fold_{k}.h5"
        write_parts(path, parts, k)
        paths.append(path)
    return paths, {"labels": labels, "ids": ids, "test_labels": test_labels}


@pytest.mark.parametrize("head", HEADS)
def test_heads_learn_separable_embeddings(tmp_path: Path, head: str) -> None:
    paths, truth = make_embeddings(tmp_path)
    result = fit_all_folds(head, PARAMS, paths)
    assert sorted(result.oof_ids) == sorted(truth["ids"])  # every training image exactly once
    assert len(set(result.oof_ids)) == len(truth["ids"])
    by_id = dict(zip(truth["ids"], truth["labels"]))
    assert [by_id[i] for i in result.oof_ids] == result.oof_labels.tolist()
    chance = 2 * truth["labels"].mean() / (1 + truth["labels"].mean())  # all-positive F1
    assert f1(result.oof_labels, result.oof_scores >= 0.5) > max(0.8, chance + 0.3)
    np.testing.assert_allclose(result.test_scores, result.test_fold_scores.mean(axis=1))
    assert result.test_fold_scores.shape == (40, 3)


def test_svm_c_changes_the_fit(tmp_path: Path) -> None:
    paths, _ = make_embeddings(tmp_path, separation=1.0)
    soft = fit_all_folds("svm", dataclasses.replace(PARAMS, C=0.01), paths)
    hard = fit_all_folds("svm", dataclasses.replace(PARAMS, C=10.0), paths)
    assert not np.allclose(soft.oof_scores, hard.oof_scores)
    assert np.mean(hard.train_f1) > np.mean(soft.train_f1)  # less regularisation fits training data closer


def test_best_threshold_maximises_f1() -> None:
    rng = np.random.default_rng(1)
    labels = (rng.random(300) < 0.2).astype(int)
    scores = np.clip(0.3 * labels + rng.normal(0.3, 0.15, 300), 0, 1)
    t = best_threshold(labels, scores)
    best = max(f1(labels, scores >= c) for c in np.unique(scores))
    assert f1(labels, scores >= t) == pytest.approx(best)


def test_metrics_report_both_thresholds_and_test(tmp_path: Path) -> None:
    paths, truth = make_embeddings(tmp_path, separation=1.5)
    result = fit_all_folds("svm", PARAMS, paths)
    fixed = head_metrics("svm", PARAMS.threshold, result, truth["test_labels"])
    oof = head_metrics("svm", "oof", result, truth["test_labels"])
    assert fixed["threshold"] == 0.5 and oof["threshold"] == fixed["oof_threshold"]
    assert fixed["cv"]["f1"] == fixed["cv"]["f1_at_0.5"]
    assert oof["cv"]["f1"] == oof["cv"]["f1_at_oof_threshold"] >= oof["cv"]["f1_at_0.5"]
    assert "test" in fixed and 0 <= fixed["test"]["f1"] <= 1
    assert "test" not in head_metrics("svm", PARAMS.threshold, result, None)


def test_run_fit_head_writes_outputs(tmp_path: Path) -> None:
    paths, truth = make_embeddings(tmp_path)
    answers = tmp_path / "answers.csv"
    answers.write_text("ID,label\n" + "".join(f"T_{i},{l}\n" for i, l in enumerate(truth["test_labels"])))
    out = tmp_path / "out"
    metrics = run_fit_head(
        "lgbm", PARAMS, embedding_paths=paths, answers_path=answers, out_predictions=out / "p.h5",
        out_metrics=out / "m.json", out_confusion=out / "c.json", out_pr=out / "pr.json",
    )
    assert json.loads((out / "m.json").read_text()) == json.loads(json.dumps(metrics))
    confusion = json.loads((out / "c.json").read_text())
    assert len(confusion) == 150 and {r["actual"] for r in confusion} == {"landslide", "no landslide"}
    assert all({"recall", "precision"} <= set(r) for r in json.loads((out / "pr.json").read_text()))
    with h5py.File(out / "p.h5") as h5:
        assert h5["test/score"].shape == (40,) and h5.attrs["head"] == "lgbm"


def test_lgbm_is_deterministic(tmp_path: Path) -> None:
    paths, _ = make_embeddings(tmp_path)
    a = fit_all_folds("lgbm", PARAMS, paths)
    b = fit_all_folds("lgbm", PARAMS, paths)
    np.testing.assert_array_equal(a.oof_scores, b.oof_scores)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"C": 0.0}, "head.C=0.0 must be > 0"),
        ({"C": -1}, "head.C=-1.0 must be > 0"),
        ({"kernel": "cubic"}, "head.kernel='cubic' is not allowed"),
        ({"threshold": 1.5}, "head.threshold=1.5 must be in"),
        ({"threshold": "best"}, "head.threshold='best' has the wrong type"),
        ({"lgbm": {"n_trees": 5}}, "unknown key 'head.lgbm.n_trees'"),
        ({"lgbm": {"deterministic": False}}, "head.lgbm.deterministic is fixed"),
        ({"logreg": {"C": 0.0}}, "head.logreg.C=0.0 must be > 0"),
        ({"logreg": {"penalty_strength": 1}}, "unknown key 'head.logreg.penalty_strength'"),
        ({"logreg": {"solver": "saga"}}, "head.logreg.solver is fixed"),
    ],
)
def test_bad_head_params(change: dict, message: str) -> None:
    with pytest.raises(ParamError, match=message.replace("(", r"\(")):
        parse_section({**dataclasses.asdict(PARAMS), **change}, HeadParams, "head")


def test_unknown_head_name() -> None:
    with pytest.raises(ParamError, match="unknown head 'knn'"):
        check_head("knn")


def test_counting_metrics_match_sklearn() -> None:
    from sklearn.metrics import f1_score, precision_score, recall_score

    from landslide_dvc.core.metrics import precision_recall_f1

    rng = np.random.default_rng(5)
    for _ in range(20):
        labels = rng.integers(0, 2, 50)
        predicted = rng.integers(0, 2, 50) * (rng.random() < 0.9)
        expected = (
            precision_score(labels, predicted, zero_division=0),
            recall_score(labels, predicted, zero_division=0),
            f1_score(labels, predicted, zero_division=0),
        )
        assert precision_recall_f1(labels, predicted) == pytest.approx(expected)
    assert precision_recall_f1(np.zeros(4), np.zeros(4)) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("head", [name for name, kind in HEAD_KINDS.items() if kind.file_suffix is not None])
def test_a_saved_head_reads_back_with_the_same_scores(tmp_path: Path, head: str) -> None:
    # export's contract for every head with a bundle file: save, load without pickle, same scores bit for bit
    from landslide_dvc.pipeline.fit_head import fit_model, model_scores
    from landslide_dvc.pipeline.h5data import load_parts

    paths, _ = make_embeddings(tmp_path)
    parts = load_parts(paths[0])
    model = fit_model(head, PARAMS, parts["train"])
    name = head_file(head, 3)
    assert name is not None and name.startswith("heads/fold_3") and name.endswith(HEAD_KINDS[head].file_suffix)
    save_head(head, model, tmp_path / "head_file")
    loaded = load_head(head, tmp_path / "head_file")
    test = parts["test"]
    assert np.array_equal(head_scores(head, loaded, test.features, test.prob), model_scores(head, model, test))


def test_file_names_of_the_heads_never_collide() -> None:
    names = [kind.file(0) for kind in HEAD_KINDS.values() if kind.file_suffix is not None]
    assert len(set(names)) == len(names)
    assert head_file("fc", 0) is None


def test_logreg_is_the_scaled_logistic_regression(tmp_path: Path) -> None:
    # the registry's logreg head against scikit-learn's own pipeline, fitted here independently
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from landslide_dvc.pipeline.fit_head import fit_model, model_scores
    from landslide_dvc.pipeline.h5data import load_parts

    paths, _ = make_embeddings(tmp_path, separation=1.0)
    parts = load_parts(paths[1])
    reference = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=1000)).fit(
        parts["train"].features, parts["train"].labels
    )
    ours = fit_model("logreg", dataclasses.replace(PARAMS, logreg={"C": 0.3, "max_iter": 1000}), parts["train"])
    np.testing.assert_allclose(model_scores("logreg", ours, parts["val"]), reference.predict_proba(parts["val"].features)[:, 1])
    weaker = fit_model("logreg", dataclasses.replace(PARAMS, logreg={"C": 0.001, "max_iter": 1000}), parts["train"])
    spread = lambda m: np.ptp(model_scores("logreg", m, parts["val"]))  # noqa: E731
    assert spread(weaker) < spread(ours)  # stronger L2 pulls the probabilities towards the prior
