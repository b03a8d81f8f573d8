"""The `train_fold@K` stage: fine-tune the backbone on fold K and write its checkpoint, OOF probabilities and metrics."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from landslide_dvc.core.augment import AugmentParams
from landslide_dvc.core.distributed import Ranks
from landslide_dvc.core.errors import DataError, ParamError
from landslide_dvc.core.io import atomic_paths
from landslide_dvc.core.model import ModelParams
from landslide_dvc.core.resume import ResumeState, fingerprint
from landslide_dvc.core.training import FoldResult, TrainParams, train_fold
from landslide_dvc.pipeline.folds import fold_data


def run_config(model_params: ModelParams, augment_params: AugmentParams, params: TrainParams) -> dict[str, Any]:
    """The parameters that define a training run (train.resume excluded: it changes no result)."""
    train = asdict(params)
    train.pop("resume")
    if train["nproc"] == 1:  # the runs from before train.nproc existed: their fingerprints stay valid
        train.pop("nproc")
    model = asdict(model_params)
    # Likewise the runs from before multispectral weights: the run_id is in the checkpoint's meta, so
    # the default keys are left out and those checkpoints keep their bytes.
    if model["checkpoint_bands"] == "rgb":
        model.pop("checkpoint_bands")
    if model["checkpoint_s1"] is None:
        model.pop("checkpoint_s1")
    return {"model": model, "augment": asdict(augment_params), "train": train}


def _log_epoch(live: Any, row: dict[str, float]) -> None:
    live.log_metric("train/loss", row["train_loss"])
    live.log_metric("lr", row["lr"])
    if "val_f1" in row:
        live.log_metric("val/f1", row["val_f1"])
        live.log_metric("val/loss", row["val_loss"])
    live.next_step()


def run_train_fold(
    fold: int,
    model_params: ModelParams,
    augment_params: AugmentParams,
    params: TrainParams,
    *,
    train_path: Path,
    smote_path: Path,
    out_model: Path,
    out_oof: Path,
    out_metrics: Path,
    live_dir: Path,
    resume_dir: Path | None,
    progress: bool = True,
) -> FoldResult | None:
    """The `train_fold@k` stage: train, then write checkpoint, OOF probabilities and metrics together.

    Under torchrun (train.nproc > 1) every rank trains; rank 0 alone logs and writes (the others return None).
    """
    import h5py
    from dvclive import Live

    from landslide_dvc.core.checkpoint import write_checkpoint
    from landslide_dvc.pipeline.h5data import load_split, load_synthetic, open_h5

    train = load_split(train_path)
    assert train.fold is not None
    n_splits = int(train.attrs.get("n_splits", int(train.fold.max()) + 1))
    if not 0 <= fold < n_splits:
        raise ParamError(f"--fold {fold} is out of range for the {n_splits} folds of train.h5 (folds.ids); use 0..{n_splits - 1}")
    synthetic = load_synthetic(smote_path, fold)
    if len(synthetic) and synthetic.images.shape[1:] != train.images.shape[1:]:
        raise DataError(f"{smote_path} images {synthetic.images.shape[1:]} do not match {train_path}; rerun `dvc repro smote`")
    with open_h5(smote_path, "smote") as h5:
        smote_digest = str(h5[f"fold_{fold}"].attrs.get("content_digest", ""))
    data = fold_data(train, synthetic, fold)
    config = run_config(model_params, augment_params, params)
    run_id = fingerprint({**config, "fold": fold, "train": str(train.attrs.get("content_digest")), "smote": smote_digest})
    resume = ResumeState(resume_dir, run_id)

    ranks = Ranks.from_env(params.nproc)
    writer = Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) if ranks.is_main else None
    with ranks, writer or contextlib.nullcontext() as live:
        result = train_fold(
            data, model_params, augment_params, params, fold, resume=resume,
            on_epoch=(lambda row: _log_epoch(live, row)) if live is not None else None,
            progress=progress and ranks.is_main, ranks=ranks,
        )
    if not ranks.is_main:
        return None
    meta = {
        "backbone": model_params.backbone,
        "in_chans": len(data.channels),
        "num_classes": 2,
        "dim": model_params.dim,
        "drop_rate": model_params.drop_rate,
        "channels": list(data.channels),
        "fold": fold,
        "best_epoch": result.best_epoch,
        "best_val_f1": result.best_val_f1,
        "run_id": run_id,
        **result.weights.as_meta(),
    }
    metrics = {
        "fold": fold,
        "best_val_f1": result.best_val_f1,
        "best_epoch": result.best_epoch,
        "train_f1": result.train_f1,
        "epochs": params.epochs,
        "n_train_original": data.n_original,
        "n_train_synthetic": len(data.train_images) - data.n_original,
        "n_val": len(data.val_ids),
        **result.weights.as_meta(),  # `dvc exp show` tells runs apart that differ only in weights
    }
    with atomic_paths(out_model, out_oof, out_metrics) as (tmp_model, tmp_oof, tmp_metrics):
        write_checkpoint(tmp_model, result.state_dict, meta)
        with h5py.File(tmp_oof, "w") as h5:
            h5.create_dataset("ids", data=np.array(data.val_ids, dtype=object), dtype=h5py.string_dtype(), track_times=False)
            h5.create_dataset("labels", data=data.val_labels, track_times=False)
            h5.create_dataset("prob", data=result.val_prob, track_times=False)
            h5.attrs["fold"] = fold
        tmp_metrics.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    resume.finish(params.epochs)
    return result
