"""DVC stage `stats_baseline`: the reference, LightGBM on per-band patch statistics, on the heads' folds."""

from landslide_dvc.core.params import read_section
from landslide_dvc.pipeline import paths
from landslide_dvc.pipeline.stage import run_stage
from landslide_dvc.pipeline.stats_baseline import StatsBaselineParams, run_stats_baseline


def main() -> None:
    params = read_section(StatsBaselineParams, "stats_baseline")
    metrics = run_stats_baseline(
        params,
        train_path=paths.NORMALIZED_TRAIN,
        test_path=paths.NORMALIZED_TEST,
        answers_path=paths.TEST_ANSWERS,
        out_predictions=paths.REFERENCE_PREDICTIONS,
        out_metrics=paths.REFERENCE_METRICS,
    )
    test = f", test F1 {metrics['test']['f1']:.4f}" if "test" in metrics else ""
    print(
        f"stats_baseline: {metrics['n_features']} features, CV F1 {metrics['cv']['f1']:.4f} "
        f"at threshold {metrics['threshold']:.3f}{test}"
    )


if __name__ == "__main__":
    run_stage("stats_baseline", main)
