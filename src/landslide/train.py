"""Fine-tuning one cross-validation fold (paper Sections 3 and 4.2).

Fold k trains on the original images outside fold k plus fold k's SMOTE images (``landslide.folds``)
and validates on fold k; the weights with the best validation F1 are kept. Every epoch reseeds all
random generators from (seed, fold, epoch), so a run resumed from its last completed epoch
(``landslide.resume``) follows exactly the same path as an uninterrupted one. With ``train.nproc``
> 1 the fold trains data-parallel under torchrun (``landslide.distributed``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from tqdm import tqdm

from landslide.augment import AugmentParams, BatchAugment
from landslide.distributed import SINGLE, Ranks
from landslide.errors import DataError, LandslideError, ParamError
from landslide.folds import FoldData, fold_data
from landslide.inference import Device, autocast, prepare_model, select_device, to_memory_format
from landslide.io import atomic_paths
from landslide.metrics import f1, validation_loss
from landslide.model import ModelParams, WeightsProvenance, build_model, resize_input
from landslide.params import require
from landslide.resume import ResumeState, fingerprint
from landslide.runtime import keep_freed_memory, seed_everything, use_threads

Schedule = Literal["none", "step", "cosine"]


@dataclass(frozen=True)
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


def rank_share(threads: int, nproc: int) -> int:
    """Each rank's intra-op threads: the fold's ``train.threads`` split evenly (0 stays 0: automatic)."""
    return max(1, threads // nproc) if threads else 0


def make_scheduler(optimizer: torch.optim.Optimizer, params: TrainParams) -> Any | None:
    """timm's per-epoch schedulers; ``step(epoch)`` sets the learning rate of that epoch."""
    from timm.scheduler import CosineLRScheduler, StepLRScheduler

    if params.schedule == "cosine":
        return CosineLRScheduler(optimizer, t_initial=params.epochs, lr_min=params.min_lr, t_in_epochs=True)
    if params.schedule == "step":
        return StepLRScheduler(optimizer, decay_t=params.step_size, decay_rate=params.step_gamma, t_in_epochs=True)
    return None


def learning_rates(params: TrainParams) -> list[float]:
    """The learning rate of every epoch under the configured schedule."""
    model = nn.Linear(1, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr)
    scheduler = make_scheduler(optimizer, params)
    rates = []
    for epoch in range(params.epochs):
        if scheduler is not None:
            scheduler.step(epoch)
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches of even size; the incomplete last batch is dropped."""
    order = torch.randperm(n, generator=generator)
    if n < batch_size:  # tiny sets: one batch, even-sized for MixUp/CutMix
        return [order[: n - n % 2]] if n >= 2 else []
    return [order[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


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


class _BestEpoch:
    """The best validated epoch so far: its F1, number, weights (on CPU) and validation probabilities."""

    def __init__(self) -> None:
        self.f1, self.epoch = -1.0, 0
        self.state_dict: dict[str, torch.Tensor] | None = None
        self.val_prob: np.ndarray | None = None

    def offer(self, val_f1: float, epoch: int, model: nn.Module, val_prob: np.ndarray) -> None:
        if val_f1 > self.f1:
            self.f1, self.epoch, self.val_prob = val_f1, epoch, val_prob
            self.state_dict = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})

    def to_state(self) -> dict[str, Any]:
        return {
            "best_f1": self.f1,
            "best_epoch": self.epoch,
            "best_state_dict": self.state_dict,
            "best_val_prob": torch.from_numpy(self.val_prob) if self.val_prob is not None else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.f1, self.epoch = float(state["best_f1"]), int(state["best_epoch"])
        self.state_dict = state["best_state_dict"]
        self.val_prob = state["best_val_prob"].numpy() if state["best_val_prob"] is not None else None


def _train_epoch(
    step: TrainStep, data: FoldData, params: TrainParams, fold: int, epoch: int, progress: bool, ranks: Ranks
) -> float:
    """One pass over the fold's training images in a seeded random order; the mean loss.

    With ranks, every rank draws the same order and trains on its share of each batch.
    """
    generator = torch.Generator().manual_seed(int(np.random.randint(2**31 - 1)))
    ranks.seed_augmentation(params.seed, fold, epoch + 1)
    step.model.train()
    losses = []
    bar = tqdm(
        ranks.shard(batches(len(data.train_images), params.batch_size, generator)),
        desc=f"fold {fold} epoch {epoch + 1}/{params.epochs}",
        disable=not progress,
        leave=False,
        file=sys.stderr,
        mininterval=1.0,
    )
    for index in bar:
        losses.append(step(data.train_images[index], data.train_labels[index]))
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    bar.close()
    return ranks.mean(float(np.mean(losses)) if losses else 0.0)


def _validate(
    model: nn.Module, data: FoldData, dim: int, device: torch.device, batch_size: int, ranks: Ranks
) -> tuple[np.ndarray, float, float]:
    """Validation probabilities (of the whole fold), F1 at 0.5 and log loss."""
    val_prob = ranks.predict(model, data.val_images, dim, device, batch_size)
    return val_prob, f1(data.val_labels, (val_prob >= 0.5).astype(np.int8)), validation_loss(data.val_labels, val_prob)


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
    network, weights = build_model(model_params, in_chans=len(data.channels))
    model = prepare_model(network, device)
    # fused Adam: one kernel for all parameters (about 7x faster than the default loop on CPU)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay, fused=True)
    scheduler = make_scheduler(optimizer, params)
    step = TrainStep(ranks.wrap(model), optimizer, BatchAugment(augment_params, data.channels), model_params.dim, device)

    start_epoch, history, best = 0, [], _BestEpoch()
    state = resume.load() if (resume is not None and params.resume) else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        best.restore(state)
        if ranks.is_main:
            print(f"fold {fold}: resuming after epoch {start_epoch}/{params.epochs}", file=sys.stderr)
    ranks.barrier()  # every rank has read the state before rank 0 overwrites it
    for row in history:
        if on_epoch is not None:
            on_epoch(row)

    for epoch in range(start_epoch, params.epochs):
        seed_everything(params.seed, fold, epoch + 1)
        step.augment.start_epoch()
        if scheduler is not None:
            scheduler.step(epoch)
        lr = float(optimizer.param_groups[0]["lr"])
        row: dict[str, float] = {"epoch": epoch + 1, "lr": lr}
        row["train_loss"] = _train_epoch(step, data, params, fold, epoch, progress, ranks)
        if (epoch + 1) % params.eval_every == 0 or epoch + 1 == params.epochs:
            val_prob, row["val_f1"], row["val_loss"] = _validate(
                model, data, model_params.dim, device, params.eval_batch_size, ranks
            )
            best.offer(row["val_f1"], epoch + 1, model, val_prob)
        history.append(row)
        if resume is not None and ranks.is_main:
            resume.save({"epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "history": history, **best.to_state()})
        if on_epoch is not None:
            on_epoch(row)
        if ranks.is_main:
            summary = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
            print(f"fold {fold} epoch {epoch + 1}/{params.epochs}: {summary}", file=sys.stderr)

    if best.state_dict is None or best.val_prob is None:  # pragma: no cover - the last epoch is always evaluated
        raise LandslideError(f"fold {fold}: no epoch was evaluated")
    model.load_state_dict(best.state_dict)
    train_prob = ranks.predict(model, data.train_images[: data.n_original], model_params.dim, device, params.eval_batch_size)
    train_labels = data.train_labels[: data.n_original].numpy()
    return FoldResult(
        state_dict=best.state_dict,
        best_epoch=best.epoch,
        best_val_f1=float(best.f1),
        train_f1=f1(train_labels, (train_prob >= 0.5).astype(np.int8)),
        val_prob=np.asarray(best.val_prob, dtype=np.float64),
        weights=weights,
        history=history,
    )


def run_config(model_params: ModelParams, augment_params: AugmentParams, params: TrainParams) -> dict[str, Any]:
    """The parameters that define a training run (train.resume excluded: it changes no result)."""
    train = asdict(params)
    train.pop("resume")
    if train["nproc"] == 1:  # the runs from before train.nproc existed: their fingerprints stay valid
        train.pop("nproc")
    return {"model": asdict(model_params), "augment": asdict(augment_params), "train": train}


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

    from landslide.checkpoint import write_checkpoint
    from landslide.h5data import load_split, load_synthetic, open_h5

    train = load_split(train_path)
    assert train.fold is not None
    n_splits = int(train.attrs.get("n_splits", int(train.fold.max()) + 1))
    if not 0 <= fold < n_splits:
        raise ParamError(f"--fold {fold} is out of range for folds.n_splits={n_splits}; use 0..{n_splits - 1}")
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
