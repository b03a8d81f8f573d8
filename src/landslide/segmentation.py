"""The Landslide4Sense segmentation baseline: a U-Net on the pixel masks, scored as the L4S paper scores it.

The model is segmentation-models-pytorch's U-Net (``seg.encoder``: any smp encoder, timm's as
``tu-<name>``), built with ``encoder_weights=None``: trained from scratch, nothing downloaded.
The loss suits a class that covers a few percent of the pixels: Dice (insensitive to the
imbalance) plus BCE with a positive-class weight, or focal loss. The score is the landslide class's
pixel precision, recall and F1 over all pixels of the validation split together (one confusion
matrix, not a mean of per-image scores), at probability ``seg.threshold``.

Validation is the split normalize wrote as test.h5 (``l4s.test_split``) when it has masks;
without masks (the first release's ValidData) it is training fold ``seg.val_fold``, held out.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before smp imports timm / the hub client

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from landslide.errors import DataError, ParamError  # noqa: E402
from landslide.metrics import precision_recall_f1  # noqa: E402
from landslide.params import require  # noqa: E402

SegLoss = Literal["dice_bce", "dice_focal", "focal"]


@dataclass(frozen=True)
class SegParams:
    """`seg:` section."""

    encoder: str  # smp encoder name; tu-<timm name> for timm's (e.g. tu-tf_efficientnetv2_s)
    encoder_depth: int  # downsampling stages (3-5); 128 px patches are 8 px at depth 4
    decoder_channels: list[int]  # one per encoder stage, deepest first
    loss: SegLoss  # dice_bce: Dice + weighted BCE; dice_focal: Dice + focal; focal: focal alone
    pos_weight: float  # BCE weight of landslide pixels (dice_bce)
    epochs: int
    batch_size: int
    lr: float  # Adam
    weight_decay: float
    flips: bool  # random flips and 90-degree rotations of image and mask together
    threshold: float  # landslide where the predicted probability >= threshold
    val_fold: int  # held-out training fold when the test split has no masks
    n_examples: int  # validation patches shown in the examples figure
    eval_batch_size: int
    seed: int
    device: str  # auto, cpu, cuda or cuda:auto (as train.device)
    threads: int = 2  # CPU intra-op threads (results depend on it); 0: torch's default

    def validate(self) -> None:
        require(self.threads >= 0, f"seg.threads={self.threads} must be >= 0 (0: torch's default)")
        require(3 <= self.encoder_depth <= 5, f"seg.encoder_depth={self.encoder_depth} must be in [3, 5]")
        require(
            len(self.decoder_channels) == self.encoder_depth and all(c >= 1 for c in self.decoder_channels),
            f"seg.decoder_channels={self.decoder_channels} needs {self.encoder_depth} positive sizes "
            f"(one per seg.encoder_depth stage)",
        )
        require(self.pos_weight > 0, f"seg.pos_weight={self.pos_weight} must be > 0")
        require(self.epochs >= 1, f"seg.epochs={self.epochs} must be >= 1")
        require(self.batch_size >= 1, f"seg.batch_size={self.batch_size} must be >= 1")
        require(self.eval_batch_size >= 1, f"seg.eval_batch_size={self.eval_batch_size} must be >= 1")
        require(self.lr > 0, f"seg.lr={self.lr} must be > 0")
        require(self.weight_decay >= 0, f"seg.weight_decay={self.weight_decay} must be >= 0")
        require(0.0 < self.threshold < 1.0, f"seg.threshold={self.threshold} must be in (0, 1)")
        require(self.val_fold >= 0, f"seg.val_fold={self.val_fold} must be >= 0")
        require(self.n_examples >= 1, f"seg.n_examples={self.n_examples} must be >= 1")


def build_unet(params: SegParams, in_chans: int) -> nn.Module:
    """smp.Unet with one output (landslide logit), random initial weights."""
    import segmentation_models_pytorch as smp

    try:
        return smp.Unet(
            encoder_name=params.encoder, encoder_weights=None, encoder_depth=params.encoder_depth,
            decoder_channels=tuple(params.decoder_channels), in_channels=in_chans, classes=1,
        )
    except (KeyError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ParamError(
            f"seg.encoder={params.encoder} with encoder_depth={params.encoder_depth} cannot build a U-Net ({reason}); "
            f"pick an smp encoder (e.g. resnet34) or a timm one as tu-<name>"
        ) from None


def make_loss(params: SegParams) -> nn.Module:
    """The per-pixel loss on logits (B, 1, H, W) and masks (B, 1, H, W) float."""
    from segmentation_models_pytorch import losses

    dice = losses.DiceLoss(mode="binary", from_logits=True)
    focal = losses.FocalLoss(mode="binary")
    bce = losses.SoftBCEWithLogitsLoss(pos_weight=torch.tensor(params.pos_weight))

    class Combined(nn.Module):
        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            if params.loss == "focal":
                return focal(logits, target)
            other = bce if params.loss == "dice_bce" else focal
            return dice(logits, target) + other(logits, target)

    return Combined()


def pixel_scores(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Landslide-class pixel precision, recall, F1 and IoU over all pixels together (0 when undefined)."""
    from sklearn.metrics import jaccard_score

    labels, predictions = np.ravel(target).astype(np.int8), np.ravel(predicted).astype(np.int8)
    precision, recall, f1 = precision_recall_f1(labels, predictions)
    iou = float(jaccard_score(labels, predictions, labels=[0, 1], pos_label=1, zero_division=0))
    return {"pixel_precision": precision, "pixel_recall": recall, "pixel_f1": f1, "pixel_iou": iou}


def _random_dihedral(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flip / 90-degree rotation for a batch's images and masks."""
    k = int(torch.randint(4, (1,), generator=generator))
    flip = bool(torch.randint(2, (1,), generator=generator))
    x, y = torch.rot90(x, k, dims=(2, 3)), torch.rot90(y, k, dims=(2, 3))
    if flip:
        x, y = torch.flip(x, dims=(3,)), torch.flip(y, dims=(3,))
    return x, y


@torch.no_grad()
def predict_probabilities(model: nn.Module, images: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """P(landslide) per pixel (N, H, W) float32."""
    model.eval()
    out = np.empty((len(images), *images.shape[-2:]), np.float32)
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start : start + batch_size]).to(device)
        out[start : start + len(x)] = torch.sigmoid(model(x))[:, 0].float().cpu().numpy()
    return out


@dataclass
class SegData:
    """Training and validation arrays, and where the validation split came from."""

    train_images: np.ndarray
    train_masks: np.ndarray
    val_images: np.ndarray
    val_masks: np.ndarray
    val_ids: list[str]
    channels: list[str]
    validation: str  # e.g. "ValidData" or "TrainData fold 0"


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
        raise ParamError(f"seg.val_fold={params.val_fold} must be below folds.n_splits={n_splits}")
    held = train.fold == params.val_fold
    return SegData(train.images[~held], train_masks[~held], train.images[held], train_masks[held],
                   [i for i, h in zip(train.ids, held) if h], train.channels, f"TrainData fold {params.val_fold}")


def train_unet(data: SegData, params: SegParams, device: torch.device) -> tuple[nn.Module, list[dict[str, float]]]:
    """Train the U-Net; returns it and one row per epoch (train loss, validation pixel scores)."""
    from landslide.runtime import seed_everything

    seed_everything(params.seed)
    model = build_unet(params, in_chans=data.train_images.shape[1]).to(device)
    loss_fn = make_loss(params)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=params.epochs)
    generator = torch.Generator().manual_seed(params.seed)
    images = torch.from_numpy(data.train_images)
    masks = torch.from_numpy(data.train_masks.astype(np.float32))[:, None]
    history = []
    for epoch in range(1, params.epochs + 1):
        model.train()
        order = torch.randperm(len(images), generator=generator)
        total, seen = 0.0, 0
        for start in range(0, len(order), params.batch_size):
            index = order[start : start + params.batch_size]
            x, y = images[index], masks[index]
            if params.flips:
                x, y = _random_dihedral(x, y, generator)
            x, y = x.to(device), y.to(device)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(index)
            seen += len(index)
        schedule.step()
        prob = predict_probabilities(model, data.val_images, params.eval_batch_size, device)
        row = {"epoch": epoch, "train_loss": total / seen, **pixel_scores(prob >= params.threshold, data.val_masks)}
        history.append(row)
        print(f"train_seg: epoch {epoch}/{params.epochs} loss {row['train_loss']:.4f} "
              f"val pixel F1 {row['pixel_f1']:.4f}", flush=True)
    return model, history


def plot_examples(data: SegData, prob: np.ndarray, threshold: float, path: Path, n: int) -> None:
    """Validation patches with the most landslide pixels: RGB, mask, prediction, one row each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from landslide.bands import rgb_names

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


def run_train_seg(
    params: SegParams,
    data: SegData,
    out_model: Path,
    out_metrics: Path,
    out_examples: Path,
    out_history: Path,
) -> dict[str, Any]:
    """The stage: train, score the validation split, write model, metrics, examples and history together."""
    from landslide.inference import select_device
    from landslide.io import atomic_paths
    from landslide.runtime import use_threads

    use_threads(params.threads)
    device = select_device(params.device, "seg.device")
    model, history = train_unet(data, params, device)
    prob = predict_probabilities(model, data.val_images, params.eval_batch_size, device)
    scores = pixel_scores(prob >= params.threshold, data.val_masks)
    metrics: dict[str, Any] = {
        **{k: round(v, 6) for k, v in scores.items()},
        "threshold": params.threshold,
        "validation": data.validation,
        "val_images": len(data.val_images),
        "val_landslide_pixel_share": round(float(data.val_masks.mean()), 6),
        "train_images": len(data.train_images),
        "epochs": params.epochs,
        "final_train_loss": round(history[-1]["train_loss"], 6),
    }
    meta = {
        "encoder": params.encoder, "encoder_depth": params.encoder_depth,
        "decoder_channels": list(params.decoder_channels), "in_chans": int(data.train_images.shape[1]),
        "channels": list(data.channels), "size": int(data.train_images.shape[-1]), "threshold": params.threshold,
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    with atomic_paths(out_model, out_metrics, out_examples, out_history) as (tmp_model, tmp_metrics, tmp_png, tmp_hist):
        torch.save({"state_dict": state, "meta": meta}, tmp_model)
        tmp_metrics.write_text(json.dumps(metrics, indent=2) + "\n")
        plot_examples(data, prob, params.threshold, tmp_png, params.n_examples)
        tmp_hist.write_text(json.dumps([{k: round(float(v), 6) for k, v in row.items()} for row in history], indent=1) + "\n")
    return metrics
