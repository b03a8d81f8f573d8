"""DVC stage `extract_embeddings`: features and FC probabilities of every fold model."""

from landslide_dvc.core.inference import EmbedParams
from landslide_dvc.core.params import read_section
from landslide_dvc.pipeline import paths
from landslide_dvc.pipeline.extract_embeddings import run_extract_embeddings
from landslide_dvc.pipeline.h5data import load_split
from landslide_dvc.pipeline.stage import run_stage


def main() -> None:
    params = read_section(EmbedParams, "embed")
    n_splits = int(load_split(paths.NORMALIZED_TRAIN, with_images=False).attrs["n_splits"])
    run_extract_embeddings(
        params,
        train_path=paths.NORMALIZED_TRAIN,
        test_path=paths.NORMALIZED_TEST,
        smote_path=paths.SMOTE_FILE,
        model_paths=[paths.fold_model(k) for k in range(n_splits)],
        out_paths=[paths.fold_embeddings(k) for k in range(n_splits)],
    )


if __name__ == "__main__":
    run_stage("extract_embeddings", main)
