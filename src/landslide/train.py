"""Fine-tuning one cross-validation fold (paper Sections 3 and 4.2).

Fold k trains on the original images outside fold k plus fold k's SMOTE images and validates on
fold k; the weights with the best validation F1 are kept. Every epoch reseeds all random
generators from (seed, fold, epoch), so a run resumed from its last completed epoch follows
exactly the same path as an uninterrupted one.
"""

from __future__ import annotations

import copy
import ctypes
import hashlib
import json
import random
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
from landslide.errors import DataError, LandslideError, ParamError
from landslide.h5data import Split, SyntheticSet
from landslide.io import atomic_path, atomic_paths
from landslide.metrics import f1
from landslide.model import ModelParams, create_model, embed, resize_input
from landslide.params import require

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
    device: Literal["auto", "cpu", "cuda"]

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


def select_device(preference: str) -> torch.device:
    """cuda when asked or available (auto), cpu otherwise."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise ParamError("train.device=cuda but no CUDA device is available; use auto or cpu")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def keep_freed_memory() -> None:
    """Let glibc reuse freed batch-sized buffers instead of returning them to the OS.

    Every augmentation step allocates a few tensors of several MB; with glibc's defaults each is
    a fresh mmap whose pages fault in on first touch, which cost as much as the augmentation
    itself on CPU. Raising the mmap and trim thresholds keeps them in the heap (the same effect
    as PyTorch's advice to use jemalloc/tcmalloc). No-op where glibc is not the allocator.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1024 * 1024 * 1024)
    mallopt(m_trim_threshold, 1024 * 1024 * 1024)


def seed_everything(*keys: int) -> None:
    """Seed python, numpy (timm's Mixup draws from it) and torch from a tuple of integers."""
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def fold_data(train: Split, synthetic: SyntheticSet, fold: int) -> FoldData:
    """Assemble fold ``fold``; refuses any overlap between validation and training sources."""
    assert train.labels is not None and train.fold is not None
    if not (train.fold == fold).any():
        raise DataError(f"fold {fold} has no images in train.h5 (folds 0..{int(train.fold.max())}); check folds.n_splits")
    in_val = train.fold == fold
    val_ids = [i for i, v in zip(train.ids, in_val) if v]
    val_set = set(val_ids)
    leaked = [a for a, b in zip(synthetic.anchor_id, synthetic.neighbor_id) if a in val_set or b in val_set]
    if leaked:
        raise DataError(
            f"SMOTE image made from validation image {leaked[0]} of fold {fold}; rerun `dvc repro -f smote`"
        )
    val_labels = train.labels[in_val]
    if not (val_labels == 1).any():
        raise DataError(f"fold {fold} has no landslide images to validate on; use more data or fewer folds")
    train_idx = np.flatnonzero(~in_val)
    images = np.concatenate([train.images[train_idx], synthetic.images]) if len(synthetic) else train.images[train_idx]
    labels = np.concatenate([train.labels[train_idx], np.ones(len(synthetic), dtype=np.int8)])
    if not (labels == 1).any():
        raise DataError(f"the training set of fold {fold} has no landslide images; use more data or fewer folds")
    return FoldData(
        train_images=torch.from_numpy(np.ascontiguousarray(images)),
        train_labels=torch.from_numpy(labels.astype(np.int64)),
        n_original=len(train_idx),
        train_ids=[train.ids[i] for i in train_idx] + [f"smote:{a}+{b}" for a, b in zip(synthetic.anchor_id, synthetic.neighbor_id)],
        val_images=torch.from_numpy(np.ascontiguousarray(train.images[in_val])),
        val_labels=val_labels.astype(np.int8),
        val_ids=val_ids,
        channels=list(train.channels),
    )


@torch.no_grad()
def predict(
    model: nn.Module,
    images: torch.Tensor,
    dim: int,
    device: torch.device,
    batch_size: int,
    *,
    with_features: bool = False,
    progress: str | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Landslide probabilities (N,) from the FC head, and optionally the pooled features (N, D)."""
    model.eval()
    probs, feats = [], []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc=progress, disable=progress is None, leave=False, file=sys.stderr, mininterval=1.0):
        x = images[start : start + batch_size].to(device, non_blocking=True)
        with _autocast(device):
            x = resize_input(_memory_format(x, device), dim)
            features, logits = embed(model, x)
        probs.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu())
        if with_features:
            feats.append(features.float().cpu())
    prob = torch.cat(probs).numpy().astype(np.float64) if probs else np.empty(0)
    features_out = torch.cat(feats).numpy() if with_features and feats else None
    return prob, features_out


def _autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def _memory_format(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


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
            x = resize_input(_memory_format(x, self.device), self.dim)
        with _autocast(self.device):
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
    history: list[dict[str, float]] = field(default_factory=list)


def fingerprint(config: dict[str, Any]) -> str:
    """Identity of a training run; a resume state is only used by the run that wrote it."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:32]


class ResumeState:
    """The persistent per-epoch checkpoint (a DVC `persist` output) of a fold's training run."""

    STATE = "state.pt"
    DONE = "complete.json"

    def __init__(self, folder: Path | None, run_id: str) -> None:
        self.folder, self.run_id = folder, run_id

    def load(self) -> dict[str, Any] | None:
        if self.folder is None:
            return None
        path = self.folder / self.STATE
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - any unreadable checkpoint means: start over
            print(f"resume: {path} is unreadable; starting this fold from scratch", file=sys.stderr)
            return None
        if not isinstance(state, dict) or state.get("run_id") != self.run_id:
            print(f"resume: {path} belongs to another configuration; starting from scratch", file=sys.stderr)
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / self.DONE).unlink(missing_ok=True)
        with atomic_path(self.folder / self.STATE) as tmp:
            torch.save({**state, "run_id": self.run_id}, tmp)

    def finish(self, epochs: int) -> None:
        """Drop the heavy state once the outputs are written; keep a small marker for DVC."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / self.DONE) as tmp:
            tmp.write_text(json.dumps({"run_id": self.run_id, "epochs": epochs}) + "\n")
        (self.folder / self.STATE).unlink(missing_ok=True)


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
) -> FoldResult:
    """Train one fold and return the best weights (by validation F1) and its metrics."""
    device = select_device(params.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    keep_freed_memory()
    seed_everything(params.seed, fold, 0)  # model initialisation; epoch e uses e + 1
    model = create_model(model_params, in_chans=len(data.channels)).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    # fused Adam: one kernel for all parameters (about 7x faster than the default loop on CPU)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay, fused=True)
    scheduler = make_scheduler(optimizer, params)
    step = TrainStep(model, optimizer, BatchAugment(augment_params, data.channels), model_params.dim, device)

    start_epoch, history = 0, []
    best: dict[str, Any] = {"f1": -1.0, "epoch": 0, "state_dict": None, "val_prob": None}
    state = resume.load() if (resume is not None and params.resume) else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, history = int(state["epoch"]), list(state["history"])
        best = {
            "f1": float(state["best_f1"]),
            "epoch": int(state["best_epoch"]),
            "state_dict": state["best_state_dict"],
            "val_prob": state["best_val_prob"].numpy() if state["best_val_prob"] is not None else None,
        }
        print(f"fold {fold}: resuming after epoch {start_epoch}/{params.epochs}", file=sys.stderr)
    for row in history:
        if on_epoch is not None:
            on_epoch(row)

    for epoch in range(start_epoch, params.epochs):
        seed_everything(params.seed, fold, epoch + 1)
        step.augment.start_epoch()
        if scheduler is not None:
            scheduler.step(epoch)
        lr = float(optimizer.param_groups[0]["lr"])
        generator = torch.Generator().manual_seed(int(np.random.randint(2**31 - 1)))
        index_batches = batches(len(data.train_images), params.batch_size, generator)
        model.train()
        losses = []
        bar = tqdm(
            index_batches,
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
        row: dict[str, float] = {"epoch": epoch + 1, "lr": lr, "train_loss": float(np.mean(losses)) if losses else 0.0}
        if (epoch + 1) % params.eval_every == 0 or epoch + 1 == params.epochs:
            val_prob, _ = predict(model, data.val_images, model_params.dim, device, params.eval_batch_size)
            row["val_f1"] = f1(data.val_labels, (val_prob >= 0.5).astype(np.int8))
            eps = 1e-7
            clipped = np.clip(val_prob, eps, 1 - eps)
            row["val_loss"] = float(-np.mean(data.val_labels * np.log(clipped) + (1 - data.val_labels) * np.log(1 - clipped)))
            if row["val_f1"] > best["f1"]:
                best = {
                    "f1": row["val_f1"],
                    "epoch": epoch + 1,
                    "state_dict": copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()}),
                    "val_prob": val_prob,
                }
        history.append(row)
        if resume is not None:
            resume.save(
                {
                    "epoch": epoch + 1,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "history": history,
                    "best_f1": best["f1"],
                    "best_epoch": best["epoch"],
                    "best_state_dict": best["state_dict"],
                    "best_val_prob": torch.from_numpy(best["val_prob"]) if best["val_prob"] is not None else None,
                }
            )
        if on_epoch is not None:
            on_epoch(row)
        summary = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
        print(f"fold {fold} epoch {epoch + 1}/{params.epochs}: {summary}", file=sys.stderr)

    if best["state_dict"] is None:  # pragma: no cover - the last epoch is always evaluated
        raise LandslideError(f"fold {fold}: no epoch was evaluated")
    model.load_state_dict(best["state_dict"])
    train_prob, _ = predict(model, data.train_images[: data.n_original], model_params.dim, device, params.eval_batch_size)
    train_labels = data.train_labels[: data.n_original].numpy()
    return FoldResult(
        state_dict=best["state_dict"],
        best_epoch=int(best["epoch"]),
        best_val_f1=float(best["f1"]),
        train_f1=f1(train_labels, (train_prob >= 0.5).astype(np.int8)),
        val_prob=np.asarray(best["val_prob"], dtype=np.float64),
        history=history,
    )


def run_config(model_params: ModelParams, augment_params: AugmentParams, params: TrainParams) -> dict[str, Any]:
    """The parameters that define a training run (train.resume excluded: it changes no result)."""
    train = asdict(params)
    train.pop("resume")
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
) -> FoldResult:
    """The `train_fold@k` stage: train, then write checkpoint, OOF probabilities and metrics together."""
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

    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        result = train_fold(
            data, model_params, augment_params, params, fold, resume=resume,
            on_epoch=lambda row: _log_epoch(live, row), progress=progress,
        )
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
