"""The stats_baseline reference: patch statistics in physical units, the pipeline's folds, the heads' metrics."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import make_zindi
from helpers import run_stage_script, write_params

from landslide_dvc.core.bands import RAW_BANDS
from landslide_dvc.core.channels import INDEX_CHANNELS, index_channels
from landslide_dvc.core.errors import ParamError
from landslide_dvc.core.params import parse_section
from landslide_dvc.pipeline.normalize import FoldsParams, NormalizeParams, run_normalize
from landslide_dvc.pipeline.stats_baseline import (
    StatsBaselineParams,
    feature_names,
    patch_statistics,
    run_stats_baseline,
    split_features,
)

SMALL_LGBM = {"n_estimators": 40, "learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 3, "n_jobs": 1}
PARAMS = StatsBaselineParams(percentiles=[10.0, 50.0, 90.0], indices=True, threshold=0.5, seed=0, lgbm=SMALL_LGBM)


def normalized(tmp_path: Path, channels: int = 12, method: str = "standard", answers: bool = True, **dataset) -> tuple[Path, dict]:
    root = tmp_path / "zindi"
    info = make_zindi(root, answers=answers, **dataset)
    out = tmp_path / f"n{channels}{method}"
    run_normalize(
        root, NormalizeParams(method, channels), FoldsParams(list(range(3)), 0), out / "train.h5", out / "test.h5", out / "answers.csv",
        optical_scale=dataset.get("optical_scale", 10000.0),
    )
    return out, info


def run(out: Path, params: StatsBaselineParams = PARAMS) -> dict:
    return run_stats_baseline(
        params, train_path=out / "train.h5", test_path=out / "test.h5", answers_path=out / "answers.csv",
        out_predictions=out / "ref.h5", out_metrics=out / "ref.json",
    )


def test_patch_statistics_follow_numpy_in_feature_name_order() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(3, 2, 8, 8)).astype(np.float32)
    features = patch_statistics(images, [25.0, 75.0])
    assert features.shape == (3, 2 * 6) and features.dtype == np.float32
    for i in range(3):
        for c in range(2):
            pixels = images[i, c].ravel()
            expected = [pixels.mean(), pixels.std(), pixels.min(), pixels.max(), *np.percentile(pixels, [25, 75])]
            np.testing.assert_allclose(features[i, c * 6 : (c + 1) * 6], expected, rtol=1e-5, atol=1e-6)
    names = feature_names([25.0, 75.0], indices=True)
    assert len(names) == (12 + 8) * 6
    assert names[:7] == ["Red_mean", "Red_std", "Red_min", "Red_max", "Red_p25", "Red_p75", "Green_mean"]
    assert names[-1] == f"{INDEX_CHANNELS[-1]}_p75"


@pytest.mark.parametrize(("channels", "method"), [(12, "standard"), (28, "robust")])
def test_features_are_computed_in_physical_units_whatever_the_normalisation(tmp_path: Path, channels: int, method: str) -> None:
    out, info = normalized(tmp_path, channels, method, n_train=9, n_test=4, n_pos=3, optical_scale=10000.0, dtype="float64")
    features = split_features(out / "train.h5", PARAMS.percentiles, indices=True)
    assert features.ids == info["train_ids"] and features.values.shape == (9, 20 * 7)
    raw = np.stack([info["arrays"][i].transpose(2, 0, 1) for i in info["train_ids"]]).astype(np.float32)
    raw[:, :4] /= 10000.0  # reflectance, as normalize converts it
    expected = patch_statistics(np.concatenate([raw, index_channels(raw)], axis=1), PARAMS.percentiles)
    np.testing.assert_allclose(features.values, expected, rtol=1e-3, atol=2e-4)
    assert split_features(out / "test.h5", PARAMS.percentiles, indices=False).values.shape == (4, len(RAW_BANDS) * 7)


def test_reference_uses_the_pipeline_folds_and_the_heads_metric_layout(tmp_path: Path) -> None:
    out, info = normalized(tmp_path, n_train=60, n_test=20, n_pos=20)
    metrics = run(out)
    with h5py.File(out / "train.h5") as h5:
        fold_of = dict(zip([s.decode() for s in h5["ids"][()]], h5["fold"][()]))
    with h5py.File(out / "ref.h5") as h5:
        oof_ids = [s.decode() for s in h5["oof/ids"][()]]
        assert sorted(oof_ids) == sorted(info["train_ids"])  # every training image scored once, out of fold
        assert [fold_of[i] for i in oof_ids] == list(h5["oof/fold"][()])
        assert [s.decode() for s in h5["test/ids"][()]] == info["test_ids"]
        assert h5["test/fold_scores"].shape == (20, 3)
        np.testing.assert_allclose(h5["test/score"][()], h5["test/fold_scores"][()].mean(axis=1))
        scores = h5["oof/score"][()]
    assert json.loads((out / "ref.json").read_text()) == metrics
    assert metrics["head"] == "stats_gbm" and metrics["n_oof"] == 60 and metrics["n_test"] == 20
    assert metrics["n_features"] == 20 * 7
    assert {"f1", "precision", "recall", "f1_at_0.5", "f1_at_oof_threshold"} <= set(metrics["cv"]) <= set(metrics["test"])
    assert {"threshold", "threshold_mode", "oof_threshold", "train", "test_predicted_positive_rate"} <= set(metrics)
    # the landslides' bright NIR-drop / SAR-change square shows in the statistics
    assert metrics["cv"]["f1"] > 0.8 and metrics["test"]["f1"] > 0.6
    again = run(out)
    assert again == metrics
    with h5py.File(out / "ref.h5") as h5:
        np.testing.assert_array_equal(h5["oof/score"][()], scores)  # seeded and deterministic


def test_without_answers_there_is_no_test_score(tmp_path: Path) -> None:
    out, _ = normalized(tmp_path, answers=False, n_train=30, n_test=6, n_pos=10)
    metrics = run(out, StatsBaselineParams([], False, "oof", 1, SMALL_LGBM))
    assert "test" not in metrics and metrics["threshold_mode"] == "oof"
    assert metrics["threshold"] == metrics["oof_threshold"] and metrics["n_features"] == 12 * 4


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"percentiles": [0, 50]}, "stats_baseline.percentiles: 0 must be in (0, 100)"),
        ({"percentiles": [50, 50]}, "lists a value twice"),
        ({"threshold": 1.5}, "stats_baseline.threshold=1.5 must be in (0, 1)"),
        ({"lgbm": {"deterministic": False}}, "stats_baseline.lgbm.deterministic is fixed"),
        ({"lgbm": {"n_trees_typo": 3}}, "unknown key 'stats_baseline.lgbm.n_trees_typo'"),
    ],
)
def test_bad_params_are_refused(values: dict, expected: str) -> None:
    mapping = {"percentiles": [5, 50, 95], "indices": True, "threshold": 0.5, "seed": 0, "lgbm": {}, **values}
    with pytest.raises(ParamError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        parse_section(mapping, StatsBaselineParams, "stats_baseline")


def test_stage_runs_after_normalize(tmp_path: Path, monkeypatch, capsys) -> None:
    make_zindi(tmp_path / "data" / "zindi", n_train=30, n_test=8, n_pos=10)
    write_params(tmp_path / "params.yaml", data={"dir": "data/zindi"}, stats_baseline={"lgbm": SMALL_LGBM})
    assert run_stage_script("normalize", tmp_path, monkeypatch, capsys)[0] == 0
    code, err = run_stage_script("stats_baseline", tmp_path, monkeypatch, capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "metrics/reference/stats_gbm.json").read_text())
    assert metrics["n_oof"] == 30 and (tmp_path / "data/reference/stats_gbm.h5").is_file()
