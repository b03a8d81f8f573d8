"""DVC stage `train_fold@K`: fine-tune the backbone on fold K (foreach over the folds).

With train.nproc > 1 this script launches torchrun, which runs it again once per rank.
"""

from landslide_dvc.core.augment import AugmentParams
from landslide_dvc.core.distributed import launch
from landslide_dvc.core.model import ModelParams
from landslide_dvc.core.params import get_section, load_params
from landslide_dvc.core.training import TrainParams
from landslide_dvc.pipeline import paths
from landslide_dvc.pipeline.stage import fold_argument, run_stage
from landslide_dvc.pipeline.train_fold import run_train_fold


def main() -> None:
    fold = fold_argument(__doc__)
    params = load_params()
    model_params = get_section(params, ModelParams, "model")
    augment_params = get_section(params, AugmentParams, "augment")
    train_params = get_section(params, TrainParams, "train")
    if launch(train_params.nproc, __file__, ["--fold", str(fold)]):
        return  # the ranks have trained the fold; rank 0 wrote the outputs
    result = run_train_fold(
        fold,
        model_params,
        augment_params,
        train_params,
        train_path=paths.NORMALIZED_TRAIN,
        smote_path=paths.SMOTE_FILE,
        out_model=paths.fold_model(fold),
        out_oof=paths.fold_oof(fold),
        out_metrics=paths.fold_metrics(fold),
        live_dir=paths.fold_live_dir(fold),
        resume_dir=paths.fold_resume_dir(fold),
    )
    if result is not None:  # rank 0 (or the only process)
        if result.weights.stem_map:  # multispectral weights: which filter each channel started from
            print(f"train_fold@{fold}: stem {result.weights.stem}: {result.weights.stem_map}")
        print(f"train_fold@{fold}: best validation F1 {result.best_val_f1:.4f} at epoch {result.best_epoch}")


if __name__ == "__main__":
    run_stage("train_fold", main)
