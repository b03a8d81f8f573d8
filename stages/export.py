"""DVC stage `export`: models/bundle/, the pickle-free model bundle that `landslide-dvc predict` loads."""

from landslide_dvc.core.inference import EmbedParams
from landslide_dvc.core.params import get_section, load_params
from landslide_dvc.pipeline import paths
from landslide_dvc.pipeline.export import run_export
from landslide_dvc.pipeline.fit_head import HeadParams
from landslide_dvc.pipeline.h5data import load_split
from landslide_dvc.pipeline.stage import run_stage
from landslide_dvc.pipeline.submit import SubmitParams


def main() -> None:
    params = load_params()
    head = get_section(params, SubmitParams, "submit").head  # the bundle scores as the submission does
    n_splits = int(load_split(paths.NORMALIZED_TRAIN, with_images=False).attrs["n_splits"])
    manifest = run_export(
        head,
        get_section(params, HeadParams, "head"),
        get_section(params, EmbedParams, "embed").tta,
        train_path=paths.NORMALIZED_TRAIN,
        model_paths=[paths.fold_model(k) for k in range(n_splits)],
        embedding_paths=[paths.fold_embeddings(k) for k in range(n_splits)],
        predictions_path=paths.head_predictions(head),
        out_dir=paths.BUNDLE_DIR,
    )
    print(
        f"export: {paths.BUNDLE_DIR}: {manifest['n_folds']} folds of {manifest['backbone']}, {head} head at "
        f"threshold {manifest['threshold']:.3f}, tta {manifest['tta']}, {len(manifest['files'])} files"
    )


if __name__ == "__main__":
    run_stage("export", main)
