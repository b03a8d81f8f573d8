"""DVC stage `normalize`: validate the dataset at data.dir, derive channels, scale, assign folds."""

from landslide.cli import run_stage
from landslide.normalize import (
    DataParams,
    FoldsParams,
    NormalizeParams,
    check_data_dir,
    run_normalize,
)
from landslide.params import get_section, load_params
from landslide.paths import NORMALIZED_TEST, NORMALIZED_TRAIN, TEST_ANSWERS


def main() -> None:
    params = load_params()
    data = get_section(params, DataParams, "data")
    norm = get_section(params, NormalizeParams, "normalize")
    folds = get_section(params, FoldsParams, "folds")
    counts = run_normalize(check_data_dir(data.dir), norm, folds, NORMALIZED_TRAIN, NORMALIZED_TEST, TEST_ANSWERS)
    print(
        f"normalize: {counts['n_train']} train ({counts['n_train_landslide']} landslides), "
        f"{counts['n_test']} test images, {counts['n_channels']} channels, {norm.method} scaling"
    )


if __name__ == "__main__":
    run_stage("normalize", main)
