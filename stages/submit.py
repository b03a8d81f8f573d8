"""DVC stage `submit`: submissions/submission.csv from the head chosen by submit.head."""

from landslide_dvc.core.params import read_section
from landslide_dvc.pipeline import paths
from landslide_dvc.pipeline.stage import run_stage
from landslide_dvc.pipeline.submit import SubmitParams, run_submit


def main() -> None:
    params = read_section(SubmitParams, "submit")
    metrics = run_submit(
        params,
        predictions_path=paths.head_predictions(params.head),
        test_path=paths.NORMALIZED_TEST,
        answers_path=paths.TEST_ANSWERS,
        out_submission=paths.SUBMISSION,
        out_metrics=paths.SUBMIT_METRICS,
    )
    print(
        f"submit: {metrics['n_rows']} rows for {metrics['n_test']} test images, "
        f"{metrics['n_positive']} predicted landslides ({params.head} head)"
    )


if __name__ == "__main__":
    run_stage("submit", main)
