"""The `train_seg` stage: the U-Net baseline on the Landslide4Sense pixel masks.

The U-Net trains in the same loop as the fold classifiers (``landslide_dvc.core.loop``): a killed
run resumes from its last completed epoch (``models/resume/seg``, a persist output), the curves go
to DVCLive (``dvclive/train_seg``), and ``seg.nproc`` > 1 trains data-parallel under torchrun.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np  # noqa: E402
import torch  # noqa: E402

from landslide_dvc.core.errors import DataError, ParamError  # noqa: E402
from landslide_dvc.core.segmentation import SegData, SegParams, pixel_scores, train_unet


def split_for_segmentation(train: Any, test: Any, train_masks: np.ndarray | None, test_masks: np.ndarray | None,
                           params: SegParams) -> SegData:
    """Train on the training split, validate on the test split's masks, else on a held-out fold."""
    if train_masks is None:
        raise DataError("data/normalized/train.h5 has no masks; train_seg needs data.format: l4s (rerun normalize)")
    if test_masks is not None:
        return SegData(train.images, train_masks, test.images, test_masks, list(test.ids), train.channels,
                       str(test.attrs.get("split", "test split")))
    n_splits = int(train.fold.max()) + 1
    if params.val_fold >= n_splits:
        raise ParamError(f"seg.val_fold={params.val_fold} must be one of the {n_splits} folds (folds.ids)")
    held = train.fold == params.val_fold
    return SegData(train.images[~held], train_masks[~held], train.images[held], train_masks[held],
                   [i for i, h in zip(train.ids, held) if h], train.channels, f"TrainData fold {params.val_fold}")


def plot_examples(data: SegData, prob: np.ndarray, threshold: float, path: Path, n: int) -> None:
    """Validation patches with the most landslide pixels: RGB, mask, prediction, one row each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from landslide_dvc.core.bands import rgb_names

    order = np.argsort(-data.val_masks.reshape(len(data.val_masks), -1).sum(axis=1, dtype=np.int64), kind="stable")[:n]
    rgb = rgb_names(data.channels)
    index = [data.channels.index(c) for c in rgb] if rgb else [0, 0, 0]
    fig, axes = plt.subplots(len(order), 3, figsize=(7.5, 2.5 * len(order)), squeeze=False)
    for row, k in enumerate(order):
        image = data.val_images[k, index].transpose(1, 2, 0)
        low, high = np.percentile(image, [2, 98])
        panels = [
            (np.clip((image - low) / max(high - low, 1e-6), 0, 1), f"{data.val_ids[k]} ({'/'.join(rgb or ['ch0'] * 3)})"),
            (data.val_masks[k], f"mask ({int(data.val_masks[k].sum())} px)"),
            (prob[k] >= threshold, f"prediction ({int((prob[k] >= threshold).sum())} px)"),
        ]
        for col, (panel, title) in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(panel, cmap=None if col == 0 else "gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle(f"U-Net on {data.validation}: image, landslide mask, prediction (p >= {threshold:g})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)


def run_config(params: SegParams, data_digests: dict[str, str]) -> dict[str, Any]:
    """What defines a U-Net run (seg.resume excluded: it changes no result), for its resume fingerprint."""
    seg = asdict(params)
    seg.pop("resume")
    # The keys of the encoder's initial weights, at their defaults (from scratch), are left out: the runs
    # from before they existed keep their fingerprints, and the resume marker its bytes.
    if seg["checkpoint"] is None:
        seg.pop("checkpoint")
    if seg["checkpoint_bands"] == "rgb":
        seg.pop("checkpoint_bands")
    return {"seg": seg, "data": data_digests}


def _log_epoch(live: Any, row: dict[str, float]) -> None:
    live.log_metric("train/loss", row["train_loss"])
    live.log_metric("lr", row["lr"])
    for name in ("pixel_f1", "pixel_precision", "pixel_recall", "pixel_iou"):
        live.log_metric(f"val/{name}", row[name])
    live.next_step()


def run_train_seg(
    params: SegParams,
    data: SegData,
    *,
    data_digests: dict[str, str],
    out_model: Path,
    out_metrics: Path,
    out_examples: Path,
    live_dir: Path,
    resume_dir: Path | None,
    progress: bool = True,
) -> dict[str, Any] | None:
    """The stage: train, score the validation split, write model, metrics and examples together.

    Under torchrun (seg.nproc > 1) every rank trains; rank 0 alone logs and writes (the others return None).
    """
    from dvclive import Live

    from landslide_dvc.core.distributed import Ranks
    from landslide_dvc.core.io import atomic_paths
    from landslide_dvc.core.resume import ResumeState, fingerprint

    resume = ResumeState(resume_dir, fingerprint(run_config(params, data_digests)))
    ranks = Ranks.from_env(params.nproc, "seg.nproc", "stages/train_seg.py")
    writer = Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) if ranks.is_main else None
    with ranks, writer or contextlib.nullcontext() as live:
        result = train_unet(
            data, params, resume=resume,
            on_epoch=(lambda row: _log_epoch(live, row)) if live is not None else None,
            progress=progress and ranks.is_main, ranks=ranks,
        )
    if not ranks.is_main:
        return None
    scores = pixel_scores(result.val_prob >= params.threshold, data.val_masks)
    metrics: dict[str, Any] = {
        **{k: round(v, 6) for k, v in scores.items()},
        "threshold": params.threshold,
        "validation": data.validation,
        "val_images": len(data.val_images),
        "val_landslide_pixel_share": round(float(data.val_masks.mean()), 6),
        "train_images": len(data.train_images),
        "epochs": params.epochs,
        "final_train_loss": round(result.history[-1]["train_loss"], 6),
    }
    meta = {
        "encoder": params.encoder, "encoder_depth": params.encoder_depth,
        "decoder_channels": list(params.decoder_channels), "in_chans": int(data.train_images.shape[1]),
        "channels": list(data.channels), "size": int(data.train_images.shape[-1]), "threshold": params.threshold,
    }
    if result.weights is not None:  # only with seg.checkpoint: the runs from scratch keep their bytes
        metrics.update(result.weights.as_meta())
        meta.update(result.weights.as_meta())
    with atomic_paths(out_model, out_metrics, out_examples) as (tmp_model, tmp_metrics, tmp_png):
        torch.save({"state_dict": result.state_dict, "meta": meta}, tmp_model)
        tmp_metrics.write_text(json.dumps(metrics, indent=2) + "\n")
        plot_examples(data, result.val_prob, params.threshold, tmp_png, params.n_examples)
    resume.finish(params.epochs)
    return metrics
