"""DVC stage `normalize`: validate the dataset at data.dir (data.format), derive channels, scale, assign folds."""

import sys

from landslide_dvc.core.params import get_section, load_params
from landslide_dvc.formats.registry import dataset_format
from landslide_dvc.pipeline.normalize import DataParams, FoldsParams, NormalizeParams, check_data_dir, run_normalize
from landslide_dvc.pipeline.paths import NORMALIZED_TEST, NORMALIZED_TRAIN, TEST_ANSWERS
from landslide_dvc.pipeline.stage import run_stage


def main() -> None:
    params = load_params()
    data = get_section(params, DataParams, "data")
    norm = get_section(params, NormalizeParams, "normalize")
    folds = get_section(params, FoldsParams, "folds")
    fmt = dataset_format(data.format)
    format_params = get_section(params, fmt.params_class, fmt.params_section) if fmt.params_section else None
    result = run_normalize(
        check_data_dir(data.dir), norm, folds, NORMALIZED_TRAIN, NORMALIZED_TEST, TEST_ANSWERS,
        optical_scale=data.optical_scale, data_format=data.format, format_params=format_params,
    )
    for notice in result.notices:
        print(f"normalize: {notice}", file=sys.stderr)
    rows = f" ({result.n_submission_rows} submission rows)" if result.n_submission_rows != result.n_test else ""
    print(
        f"normalize: {result.n_train} train ({result.n_train_landslide} landslides), "
        f"{result.n_test} test images{rows}, {result.n_channels} channels, {norm.method} scaling"
    )


if __name__ == "__main__":
    run_stage("normalize", main)
