"""The shared cross-validation of fit_head and stats_baseline: fold loop, predictions file, LightGBM keys."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np
import pytest

from landslide_dvc.core.errors import DataError, ParamError
from landslide_dvc.core.heads import LGBM_FIXED, check_lgbm_params, lgbm_classifier
from landslide_dvc.core.params import parse_section
from landslide_dvc.pipeline.crossval import CrossValResult, Fold, cross_validate, write_predictions
from landslide_dvc.pipeline.fit_head import HeadParams
from landslide_dvc.pipeline.h5data import Part
from landslide_dvc.pipeline.stats_baseline import StatsBaselineParams

N, K = 30, 3
IDS = [f"ID_{i:02d}" for i in range(N)]
LABELS = (np.arange(N) % 4 == 0).astype(np.int8)
FOLD = np.arange(N) % K
TEST = Part(np.zeros((5, 2), np.float32), np.zeros(5), [f"T_{i}" for i in range(5)], None)


def part(mask: np.ndarray, synthetic: np.ndarray | None = None) -> Part:
    ids = [i for i, m in zip(IDS, mask) if m]
    features = np.zeros((len(ids), 2), np.float32)
    return Part(features, np.zeros(len(ids)), ids, LABELS[mask], synthetic)


def folds(test: Part = TEST) -> list[Fold]:
    return [Fold(part(FOLD != k), part(FOLD == k), test, source=f"fold_{k}.h5") for k in range(K)]


class Memorising:
    """A fake model per fit: recalls the labels of the images it was fitted on, -1 elsewhere; test scores = fit number."""

    def __init__(self) -> None:
        self.fitted_on: list[set[str]] = []

    def __call__(self, train: Part, others: list[Part]) -> tuple[np.ndarray, list[np.ndarray]]:
        seen = dict(zip(train.ids, train.labels.tolist()))
        self.fitted_on.append(set(seen))

        def score(p: Part) -> np.ndarray:
            if p is TEST:
                return np.full(len(p.ids), float(len(self.fitted_on)))
            return np.array([float(seen.get(i, -1.0)) for i in p.ids])

        return score(train), [score(p) for p in others]


def test_each_held_out_fold_is_scored_by_a_model_not_fitted_on_it() -> None:
    model = Memorising()
    result = cross_validate(folds(), model, producer="extract_embeddings")
    assert len(model.fitted_on) == K
    for k, seen in enumerate(model.fitted_on):
        held_out = {i for i, f in zip(IDS, FOLD) if f == k}
        assert seen.isdisjoint(held_out) and seen | held_out == set(IDS)
    assert (result.oof_scores == -1.0).all()  # no OOF score came from a model that saw the image
    assert sorted(result.oof_ids) == IDS  # every training image once
    by_id = dict(zip(IDS, zip(LABELS, FOLD)))
    assert result.oof_labels.tolist() == [by_id[i][0] for i in result.oof_ids]
    assert result.oof_fold.tolist() == [by_id[i][1] for i in result.oof_ids]
    assert result.oof_fold.dtype == np.int8
    assert result.test_ids == TEST.ids and result.test_fold_scores.shape == (5, K)
    np.testing.assert_array_equal(result.test_fold_scores[0], [1.0, 2.0, 3.0])  # fold k's model in column k
    np.testing.assert_array_equal(result.test_scores, np.full(5, 2.0))  # mean over the folds
    assert result.train_f1 == [1.0] * K  # each model recalls its own training labels


def test_train_f1_counts_original_images_only() -> None:
    def wrong_on_synthetic(train: Part, others: list[Part]) -> tuple[np.ndarray, list[np.ndarray]]:
        assert train.synthetic is not None
        scores = np.where(train.synthetic, 1.0 - train.labels, train.labels).astype(float)
        return scores, [np.zeros(len(p.ids)) for p in others]

    with_smote = []
    for fold in folds():
        synthetic = np.arange(len(fold.train.ids)) % 2 == 0  # half marked synthetic
        with_smote.append(fold._replace(train=dataclasses.replace(fold.train, synthetic=synthetic)))
    result = cross_validate(with_smote, wrong_on_synthetic, producer="extract_embeddings")
    assert result.train_f1 == [1.0] * K


def test_folds_with_other_test_ids_are_refused() -> None:
    other = dataclasses.replace(TEST, ids=[f"X_{i}" for i in range(5)])
    bad = folds()
    bad[2] = bad[2]._replace(test=other)
    with pytest.raises(DataError, match=r"fold_2.h5 lists other test IDs than fold 0; rerun `dvc repro -f extract_embeddings`"):
        cross_validate(bad, Memorising(), producer="extract_embeddings")


def test_an_image_held_out_twice_is_refused() -> None:
    bad = folds()
    bad[1] = bad[1]._replace(val=bad[0].val)
    with pytest.raises(DataError, match="validation part of two folds"):
        cross_validate(bad, Memorising(), producer="normalize")


def result_for_writing() -> CrossValResult:
    rng = np.random.default_rng(0)
    fold_scores = rng.random((4, 3))
    return CrossValResult(
        oof_ids=["a", "b", "c"], oof_labels=np.array([0, 1, 0], np.int8), oof_scores=rng.random(3),
        oof_fold=np.array([0, 1, 2], np.int8), test_ids=["t1", "t2", "t3", "t4"],
        test_scores=fold_scores.mean(axis=1), test_fold_scores=fold_scores, train_f1=[1.0, 1.0, 1.0],
    )


def test_predictions_file_round_trips(tmp_path: Path) -> None:
    result = result_for_writing()
    path = tmp_path / "p.h5"
    write_predictions(path, result, head="stats_gbm", threshold=0.25, attrs={"features": ["B1_mean", "B1_std"]})
    with h5py.File(path) as h5:
        assert set(h5.attrs) == {"features", "head", "threshold"}
        assert h5.attrs["head"] == "stats_gbm" and h5.attrs["threshold"] == 0.25
        assert list(h5.attrs["features"]) == ["B1_mean", "B1_std"]
        assert sorted(h5["oof"]) == ["fold", "ids", "labels", "score"] and sorted(h5["test"]) == ["fold_scores", "ids", "score"]
        assert [s.decode() for s in h5["oof/ids"][()]] == result.oof_ids
        assert [s.decode() for s in h5["test/ids"][()]] == result.test_ids
        for name, values in [
            ("oof/labels", result.oof_labels), ("oof/score", result.oof_scores), ("oof/fold", result.oof_fold),
            ("test/score", result.test_scores), ("test/fold_scores", result.test_fold_scores),
        ]:
            np.testing.assert_array_equal(h5[name][()], values)
            assert h5[name].dtype == values.dtype


def test_predictions_file_bytes_depend_only_on_the_result(tmp_path: Path) -> None:
    write_predictions(tmp_path / "a.h5", result_for_writing(), head="svm", threshold=0.5)
    write_predictions(tmp_path / "b.h5", result_for_writing(), head="svm", threshold=0.5)
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()  # no timestamps: DVC's hash is stable


@pytest.mark.parametrize("section", ["head", "stats_baseline"])
def test_lgbm_keys_are_named_with_their_section(section: str) -> None:
    check_lgbm_params({"n_estimators": 10, "num_leaves": 7}, section)  # LGBMClassifier keys pass
    with pytest.raises(ParamError, match=rf"unknown key '{section}\.lgbm\.n_trees'"):
        check_lgbm_params({"n_trees": 5}, section)
    for fixed in [*LGBM_FIXED, "random_state"]:
        with pytest.raises(ParamError, match=rf"^{section}\.lgbm\.{fixed} is fixed .*the seed is {section}\.seed"):
            check_lgbm_params({fixed: 1}, section)


HEAD = {"kernel": "rbf", "C": 1.0, "gamma": "scale", "threshold": 0.5, "seed": 0, "logreg": {"C": 1.0}}
STATS = {"percentiles": [50.0], "indices": False, "threshold": 0.5, "seed": 0}


@pytest.mark.parametrize(
    ("cls", "section", "values"), [(HeadParams, "head", HEAD), (StatsBaselineParams, "stats_baseline", STATS)]
)
def test_each_stage_checks_its_lgbm_section(cls: type, section: str, values: dict) -> None:
    with pytest.raises(ParamError, match=rf"unknown key '{section}\.lgbm\.n_trees'"):
        parse_section({**values, "lgbm": {"n_trees": 5}}, cls, section)
    with pytest.raises(ParamError, match=rf"{section}\.lgbm\.deterministic is fixed"):
        parse_section({**values, "lgbm": {"deterministic": False}}, cls, section)


def test_lgbm_classifier_puts_the_fixed_settings_and_seed_last() -> None:
    params = lgbm_classifier({"n_estimators": 5, "verbose": 1, "random_state": 9}, seed=3).get_params()
    assert params["n_estimators"] == 5 and params["random_state"] == 3
    assert {key: params[key] for key in LGBM_FIXED} == LGBM_FIXED
