"""Fine-tuning one cross-validation fold (paper Sections 3 and 4.2).

Fold k trains on the original images outside fold k plus fold k's SMOTE images (assembled by
``landslide_dvc.pipeline.folds``) and validates on fold k; the weights with the best validation F1
are kept. The epochs run in the one training loop (``landslide_dvc.core.loop``): seeded from
(seed, fold, epoch), resumable, and data-parallel under torchrun with ``train.nproc`` > 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from timm.loss import SoftTargetCrossEntropy
from torch import nn

from landslide_dvc.core.augment import AugmentParams, BatchAugment
from landslide_dvc.core.devices import Device, autocast, prepare_model, select_device, to_memory_format
from landslide_dvc.core.distributed import SINGLE, Ranks
from landslide_dvc.core.loop import LoopSettings, Schedule, make_scheduler, rank_share, run_epochs
from landslide_dvc.core.metrics import f1, validation_loss
from landslide_dvc.core.model import ModelParams, WeightsProvenance, build_model, resize_input
from landslide_dvc.core.params import params_section, require
from landslide_dvc.core.resume import ResumeState
from landslide_dvc.core.runtime import keep_freed_memory, seed_everything, use_threads


@params_section
class TrainParams:
    """`train:` section (Table 2: LR Schedule column; paper: Adam 3e-4, batch 36, 50 epochs)."""

    epochs: int
    batch_size: int  # even: MixUp/CutMix pair each image with the batch reversed
    lr: float
    weight_decay: float
    schedule: Schedule  # none (constant), step, cosine (CosineAnnealing to min_lr)
    step_size: int  # step schedule: epochs between decays
    step_gamma: float  # step schedule: decay factor
    min_lr: float  # cosine schedule: final learning rate
    eval_every: int  # validate every N epochs (and always after the last)
    eval_batch_size: int
    seed: int
    resume: bool  # continue a killed run from its last completed epoch
    device: Device
    nproc: int = 1  # data-parallel processes (torchrun); the global batch is split between them
    threads: int = 2  # CPU intra-op threads of the fold, split between its nproc processes (results depend on it); 0: cores / nproc

    def validate(self) -> None:
        require(self.epochs >= 1, f"train.epochs={self.epochs} must be >= 1")
        require(
            self.batch_size >= 2 and self.batch_size % 2 == 0,
            f"train.batch_size={self.batch_size} must be an even number >= 2",
        )
        require(self.lr > 0, f"train.lr={self.lr} must be > 0")
        require(self.weight_decay >= 0, f"train.weight_decay={self.weight_decay} must be >= 0")
        require(self.step_size >= 1, f"train.step_size={self.step_size} must be >= 1")
        require(0 < self.step_gamma <= 1, f"train.step_gamma={self.step_gamma} must be in (0, 1]")
        require(0 <= self.min_lr <= self.lr, f"train.min_lr={self.min_lr} must be in [0, train.lr]")
        require(self.eval_every >= 1, f"train.eval_every={self.eval_every} must be >= 1")
        require(self.eval_batch_size >= 1, f"train.eval_batch_size={self.eval_batch_size} must be >= 1")
        require(self.nproc >= 1, f"train.nproc={self.nproc} must be >= 1")
        require(self.threads >= 0, f"train.threads={self.threads} must be >= 0 (0: share the cores)")
        require(
            self.batch_size % (2 * self.nproc) == 0,
            f"train.batch_size={self.batch_size} does not split into train.nproc={self.nproc} even per-process "
            f"batches (MixUp/CutMix); use a multiple of {2 * self.nproc}",
        )


def learning_rates(params: TrainParams) -> list[float]:
    """The learning rate of every epoch under the configured schedule."""
    model = nn.Linear(1, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    scheduler = _scheduler(optimizer, params)
    rates = []
    for epoch in range(params.epochs):
        if scheduler is not None:
            scheduler.step(epoch)
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


def _scheduler(optimizer: torch.optim.Optimizer, params: TrainParams) -> Any | None:
    return make_scheduler(optimizer, params.schedule, params.epochs, min_lr=params.min_lr,
                          step_size=params.step_size, step_gamma=params.step_gamma)


@dataclass
class FoldData:
    """The tensors of one fold: training (originals + SMOTE) and validation (fold k originals)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    n_original: int  # the first n_original training images are originals, the rest synthetic
    train_ids: list[str]
    val_images: torch.Tensor
    val_labels: np.ndarray
    val_ids: list[str]
    channels: list[str]


class TrainStep:
    """One optimisation step: augmentation, mixing, resize, forward, soft-label loss, Adam."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        augment: BatchAugment,
        dim: int,
        device: torch.device,
    ) -> None:
        self.model, self.optimizer, self.augment = model, optimizer, augment
        self.dim, self.device = dim, device
        self.loss_fn = SoftTargetCrossEntropy()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        x = images.to(self.device, non_blocking=True)
        y = labels.to(self.device, non_blocking=True)
        with torch.no_grad():
            x, targets = self.augment(x, y)
            x = resize_input(to_memory_format(x, self.device), self.dim)
        with autocast(self.device):
            logits = self.model(x)
        loss = self.loss_fn(logits.float(), targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


@dataclass
class FoldResult:
    """What one fold's training produced."""

    state_dict: dict[str, torch.Tensor]
    best_epoch: int  # 1-based
    best_val_f1: float
    train_f1: float
    val_prob: np.ndarray
    weights: WeightsProvenance  # where the initial weights came from
    history: list[dict[str, float]] = field(default_factory=list)


def train_fold(
    data: FoldData,
    model_params: ModelParams,
    augment_params: AugmentParams,
    params: TrainParams,
    fold: int,
    *,
    resume: ResumeState | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
    ranks: Ranks = SINGLE,
) -> FoldResult:
    """Train one fold and return the best weights (by validation F1) and its metrics.

    ``ranks``: this process's place among torchrun's workers; every rank returns the same result,
    and ``resume`` saves only on rank 0.
    """
    device = select_device(params.device, "train.device", rank=ranks.local_rank)
    ranks.connect(device)
    use_threads(rank_share(params.threads, params.nproc))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    keep_freed_memory()
    seed_everything(params.seed, fold, 0)  # model initialisation; epoch e uses e + 1
    network, weights = build_model(model_params, in_chans=len(data.channels), channels=data.channels)
    model = prepare_model(network, device)
    # fused Adam: one kernel for all parameters (about 7x faster than the default loop on CPU)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay, fused=True)
    scheduler = _scheduler(optimizer, params)
    step = TrainStep(ranks.wrap(model), optimizer, BatchAugment(augment_params, data.channels), model_params.dim, device)

    settings = LoopSettings(
        epochs=params.epochs, batch_size=params.batch_size, eval_every=params.eval_every, seed=params.seed,
        resume=params.resume, keep="best", label=f"fold {fold}", stream=fold,
    )

    def validate() -> tuple[dict[str, float], float, np.ndarray]:
        val_prob = ranks.predict(model, data.val_images, model_params.dim, device, params.eval_batch_size)
        val_f1 = f1(data.val_labels, (val_prob >= 0.5).astype(np.int8))
        return {"val_f1": val_f1, "val_loss": validation_loss(data.val_labels, val_prob)}, val_f1, val_prob

    loop = run_epochs(
        settings, model, optimizer, scheduler,
        n_train=len(data.train_images), train_module=step.model,
        step=lambda index: step(data.train_images[index], data.train_labels[index]),
        validate=validate, start_epoch=step.augment.start_epoch,
        resume=resume, on_epoch=on_epoch, progress=progress, ranks=ranks,
    )
    best = loop.kept
    assert best.state_dict is not None and best.output is not None
    model.load_state_dict(best.state_dict)
    train_prob = ranks.predict(model, data.train_images[: data.n_original], model_params.dim, device, params.eval_batch_size)
    train_labels = data.train_labels[: data.n_original].numpy()
    return FoldResult(
        state_dict=best.state_dict,
        best_epoch=best.epoch,
        best_val_f1=float(best.score),
        train_f1=f1(train_labels, (train_prob >= 0.5).astype(np.int8)),
        val_prob=np.asarray(best.output, dtype=np.float64),
        weights=weights,
        history=loop.history,
    )


