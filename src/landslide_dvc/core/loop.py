"""The one training loop: epochs of seeded batches, validation, the kept epoch, resume and logging.

Both the fold classifiers (``landslide_dvc.core.training``) and the U-Net
(``landslide_dvc.core.segmentation``) train through ``run_epochs``; each brings its own
optimisation step and validation. Every epoch reseeds all random generators from
(seed, stream, epoch), so a run resumed from its last completed epoch
(``landslide_dvc.core.resume``) follows exactly the path of an uninterrupted one, and under
torchrun every rank draws the same batch order and trains on its share of each batch
(``landslide_dvc.core.distributed``).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from landslide_dvc.core.distributed import SINGLE, Ranks
from landslide_dvc.core.errors import LandslideError
from landslide_dvc.core.resume import ResumeState
from landslide_dvc.core.runtime import seed_everything

Schedule = Literal["none", "step", "cosine"]


@dataclass(frozen=True)
class LoopSettings:
    """What the loop needs from a model's params section (``train:`` or ``seg:``)."""

    epochs: int
    batch_size: int
    eval_every: int  # validate every N epochs (and always after the last)
    seed: int
    resume: bool  # continue a killed run from its last completed epoch
    keep: Literal["best", "last"]  # best: the epoch with the highest validation score; last: the final one
    label: str  # how progress lines name the run, e.g. "fold 0" or "train_seg"
    stream: int = 0  # separates the random streams of runs that share a seed (the fold number)


def rank_share(threads: int, nproc: int) -> int:
    """Each rank's intra-op threads: the run's ``threads`` split evenly (0 stays 0: automatic)."""
    return max(1, threads // nproc) if threads else 0


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: Schedule,
    epochs: int,
    *,
    min_lr: float = 0.0,
    step_size: int = 1,
    step_gamma: float = 1.0,
) -> Any | None:
    """timm's per-epoch schedulers; ``step(epoch)`` sets the learning rate of that epoch."""
    from timm.scheduler import CosineLRScheduler, StepLRScheduler

    if schedule == "cosine":
        return CosineLRScheduler(optimizer, t_initial=epochs, lr_min=min_lr, t_in_epochs=True)
    if schedule == "step":
        return StepLRScheduler(optimizer, decay_t=step_size, decay_rate=step_gamma, t_in_epochs=True)
    return None


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches of even size; the incomplete last batch is dropped."""
    order = torch.randperm(n, generator=generator)
    if n < batch_size:  # tiny sets: one batch, even-sized for MixUp/CutMix
        return [order[: n - n % 2]] if n >= 2 else []
    return [order[i : i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


class KeptEpoch:
    """The epoch whose weights the run returns: its score, number, weights (on CPU) and validation output."""

    def __init__(self, keep: Literal["best", "last"]) -> None:
        self.keep = keep
        self.score, self.epoch = -1.0, 0
        self.state_dict: dict[str, torch.Tensor] | None = None
        self.output: np.ndarray | None = None

    def offer(self, score: float, epoch: int, model: nn.Module, output: np.ndarray) -> None:
        if self.keep == "last" or score > self.score:
            self.score, self.epoch, self.output = score, epoch, output
            self.state_dict = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})

    def to_state(self) -> dict[str, Any]:
        return {
            "best_f1": self.score,
            "best_epoch": self.epoch,
            "best_state_dict": self.state_dict,
            "best_val_prob": torch.from_numpy(self.output) if self.output is not None else None,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.score, self.epoch = float(state["best_f1"]), int(state["best_epoch"])
        self.state_dict = state["best_state_dict"]
        self.output = state["best_val_prob"].numpy() if state["best_val_prob"] is not None else None


@dataclass
class LoopResult:
    kept: KeptEpoch
    history: list[dict[str, float]]


# One optimisation step on the training items at these indices; returns the batch loss.
StepFn = Callable[[torch.Tensor], float]
# Validation: the row entries to log, the score that ranks epochs, and the output kept with the epoch.
ValidateFn = Callable[[], tuple[dict[str, float], float, np.ndarray]]


def run_epochs(
    settings: LoopSettings,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any | None,
    *,
    n_train: int,
    train_module: nn.Module,
    step: StepFn,
    validate: ValidateFn,
    start_epoch: Callable[[], None] | None = None,
    resume: ResumeState | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
    ranks: Ranks = SINGLE,
) -> LoopResult:
    """Train ``model`` for ``settings.epochs`` epochs; the kept epoch (best or last) and one row per epoch.

    ``train_module`` is what the step calls (DDP's wrapper under torchrun, else ``model``);
    ``start_epoch`` runs right after the epoch's reseeding (per-epoch augmentation state).
    """
    first_epoch, history, kept = 0, [], KeptEpoch(settings.keep)
    state = resume.load() if (resume is not None and settings.resume) else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        first_epoch, history = int(state["epoch"]), list(state["history"])
        kept.restore(state)
        if ranks.is_main:
            print(f"{settings.label}: resuming after epoch {first_epoch}/{settings.epochs}", file=sys.stderr)
    ranks.barrier()  # every rank has read the state before rank 0 overwrites it
    for row in history:
        if on_epoch is not None:
            on_epoch(row)

    for epoch in range(first_epoch, settings.epochs):
        seed_everything(settings.seed, settings.stream, epoch + 1)
        if start_epoch is not None:
            start_epoch()
        if scheduler is not None:
            scheduler.step(epoch)
        row: dict[str, float] = {"epoch": epoch + 1, "lr": float(optimizer.param_groups[0]["lr"])}
        row["train_loss"] = _train_epoch(settings, train_module, step, n_train, epoch, progress, ranks)
        if (epoch + 1) % settings.eval_every == 0 or epoch + 1 == settings.epochs:
            scores, score, output = validate()
            row.update(scores)
            kept.offer(score, epoch + 1, model, output)
        history.append(row)
        if resume is not None and ranks.is_main:
            resume.save({"epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "history": history, **kept.to_state()})
        if on_epoch is not None:
            on_epoch(row)
        if ranks.is_main:
            summary = " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "epoch")
            print(f"{settings.label} epoch {epoch + 1}/{settings.epochs}: {summary}", file=sys.stderr)

    if kept.state_dict is None or kept.output is None:  # pragma: no cover - the last epoch is always evaluated
        raise LandslideError(f"{settings.label}: no epoch was evaluated")
    return LoopResult(kept=kept, history=history)


def _train_epoch(
    settings: LoopSettings, train_module: nn.Module, step: StepFn, n_train: int, epoch: int, progress: bool, ranks: Ranks
) -> float:
    """One pass over the training items in a seeded random order; the mean loss.

    With ranks, every rank draws the same order and trains on its share of each batch.
    """
    generator = torch.Generator().manual_seed(int(np.random.randint(2**31 - 1)))
    ranks.seed_augmentation(settings.seed, settings.stream, epoch + 1)
    train_module.train()
    losses = []
    bar = tqdm(
        ranks.shard(batches(n_train, settings.batch_size, generator)),
        desc=f"{settings.label} epoch {epoch + 1}/{settings.epochs}",
        disable=not progress,
        leave=False,
        file=sys.stderr,
        mininterval=1.0,
    )
    for index in bar:
        losses.append(step(index))
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
    bar.close()
    return ranks.mean(float(np.mean(losses)) if losses else 0.0)
