"""Data-parallel training with PyTorch's own engine: torchrun and DistributedDataParallel.

With ``train.nproc > 1`` the `train_fold` stage (``seg.nproc > 1``: `train_seg`) launches torchrun (``torch.distributed.run
--standalone``) on its own script, and each of the ``nproc`` workers trains the fold with its rank:

- every rank draws the same seeded permutation of the epoch and takes its contiguous share of each
  global batch, so the images that meet in one optimisation step are those of a 1-process run;
- augmentation, dropout and MixUp/CutMix are then reseeded from (seed, fold, epoch, rank);
- DDP averages the gradients (NCCL on GPUs, gloo on CPU), so the ranks keep identical weights;
- validation and training-F1 predictions are split across the ranks and gathered back in the
  original order, and F1 is computed once on the whole fold;
- only rank 0 logs and writes outputs and the resume state; a resumed run loads it on every rank.

With one process none of this runs: ``SINGLE`` is a no-op at every step, today's exact code path.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from landslide_dvc.core.errors import LandslideError, ParamError
from landslide_dvc.core.inference import predict
from landslide_dvc.core.runtime import seed_everything

TORCHRUN_ENV = "TORCHELASTIC_RUN_ID"  # set by torchrun in every worker
LAUNCHER_ENV = "LANDSLIDE_LAUNCHER_PID"  # set by ``launch`` for its workers


def inside_torchrun() -> bool:
    return TORCHRUN_ENV in os.environ


def rank_threads(nproc: int) -> int:
    """CPU threads per rank: this process's cores shared evenly (an explicit OMP_NUM_THREADS wins).

    Without it, 2 ranks on 2 cores would each start 2 intra-op threads and fight for the cores.
    """
    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        return int(os.environ["OMP_NUM_THREADS"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // nproc)


def launch(nproc: int, script: str, args: list[str], param: str = "train.nproc") -> bool:
    """Run ``script args`` once per rank under torchrun and wait for all of them.

    False (nothing launched) when one process is asked for or this process already is a worker.
    A worker's failure has been printed by the worker itself; here it becomes one more line.
    """
    if inside_torchrun():
        _die_with_launcher()
        return False
    if nproc == 1:
        return False
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    os.environ.setdefault("OMP_NUM_THREADS", str(rank_threads(nproc)))
    os.environ[LAUNCHER_ENV] = str(os.getpid())
    _quiet_launcher_logs()
    argv = ["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0", script, *args]
    try:
        torchrun.run(torchrun.parse_args(argv))
    except ChildFailedError as exc:
        rank, failure = min(exc.failures.items())
        how = f"was killed by signal {-failure.exitcode}" if failure.exitcode < 0 else f"exited with {failure.exitcode}"
        raise LandslideError(
            f"training process {rank} of {nproc} ({param}) {how}; its own message, if any, is above"
        ) from None
    except SignalException as exc:
        if exc.sigval == signal.SIGINT:
            raise KeyboardInterrupt from None
        sys.exit(128 + int(exc.sigval))
    return True


def _die_with_launcher() -> None:
    """Make this worker end with the process that launched it, even when that one is SIGKILLed.

    torchrun starts each worker in a session of its own, so killing the stage's process group
    (a killed `dvc repro`) would otherwise leave the workers training, and rank 0 writing, on their own.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return
    pr_set_pdeathsig = 1
    prctl(pr_set_pdeathsig, signal.SIGKILL)
    launcher = os.environ.get(LAUNCHER_ENV)
    if launcher and os.getppid() != int(launcher):  # it died before the line above took effect
        os._exit(1)


def _quiet_launcher_logs() -> None:
    """Keep torchrun's agent to errors that matter: a worker's failure is reported in one line by ``launch``."""
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if name.startswith("torch.distributed.elastic") and isinstance(logger, logging.Logger):
            logger.setLevel(logging.CRITICAL)


@dataclass
class Ranks:
    """This process's place among the data-parallel workers of one fold (rank 0 of 1: no workers)."""

    rank: int = 0
    local_rank: int | None = None  # the worker's index on this machine (its GPU under train.device=cuda)
    world: int = 1
    comm_device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(cls, nproc: int, param: str = "train.nproc", script: str = "stages/train_fold.py --fold K") -> Ranks:
        """The ranks torchrun started (checked against ``param``, e.g. train.nproc), or the single process."""
        if not inside_torchrun():
            if nproc > 1:
                raise ParamError(
                    f"{param}={nproc} needs the training processes torchrun starts; run "
                    f"`python {script}` (it launches them) or set {param}=1"
                )
            return cls()
        world, local_world = int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_WORLD_SIZE"])
        if world != nproc:
            raise ParamError(
                f"torchrun started {world} processes but {param}={nproc}; set {param}={world} "
                f"or let `python {script.split()[0]}` launch them"
            )
        if local_world != world:
            raise ParamError(f"{param}={nproc} trains on one machine; run torchrun with --nnodes=1 (--standalone)")
        return cls(rank=int(os.environ["RANK"]), local_rank=int(os.environ["LOCAL_RANK"]), world=world)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs and writes."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world > 1

    def connect(self, device: torch.device) -> None:
        """Join the process group: NCCL between GPUs, gloo on CPU; share the cores between ranks."""
        if not self.parallel or dist.is_initialized():
            return
        torch.set_num_threads(rank_threads(self.world))
        self.comm_device = device if device.type == "cuda" else torch.device("cpu")
        if device.type == "cuda":
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")

    def __enter__(self) -> Ranks:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.parallel and dist.is_initialized():
            dist.destroy_process_group()

    def wrap(self, model: nn.Module, *, unused_parameters: bool = False) -> nn.Module:
        """The module the optimisation step calls: DDP (averaging gradients) when there are ranks.

        ``unused_parameters``: the model has parameters no forward uses (a timm encoder cut to a
        shallower U-Net depth keeps its deeper stages), which DDP must be told to skip.
        """
        if not self.parallel:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.comm_device] if self.comm_device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, find_unused_parameters=unused_parameters)

    def shard(self, batches: list[torch.Tensor]) -> list[torch.Tensor]:
        """This rank's contiguous part of every global batch (an even number of images, for MixUp/CutMix)."""
        if not self.parallel:
            return batches
        shares = []
        for batch in batches:
            size = len(batch) // self.world
            size -= size % 2  # only the undersized batch of a tiny set can need this
            if size:
                shares.append(batch[self.rank * size : (self.rank + 1) * size])
        return shares

    def seed_augmentation(self, *keys: int) -> None:
        """Give this rank its own augmentation, dropout and MixUp draws, from (keys..., rank)."""
        if self.parallel:
            seed_everything(*keys, self.rank)

    def mean(self, value: float) -> float:
        """The average of ``value`` over the ranks."""
        if not self.parallel:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.comm_device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world

    def predict(self, model: nn.Module, images: torch.Tensor, dim: int, device: torch.device, batch_size: int) -> np.ndarray:
        """``landslide_dvc.core.inference.predict`` of all ``images``; with ranks, each predicts a slice and all get the whole."""
        if not self.parallel:
            prob, _ = predict(model, images, dim, device, batch_size)
            return prob
        self.sync_buffers(model)  # rank 0's BatchNorm statistics: the weights rank 0 saves
        bounds = np.linspace(0, len(images), self.world + 1).astype(int)
        prob, _ = predict(model, images[bounds[self.rank] : bounds[self.rank + 1]], dim, device, batch_size)
        return self.gather(prob, np.diff(bounds).tolist())

    def gather(self, part: np.ndarray, sizes: list[int]) -> np.ndarray:
        """Concatenate every rank's ``part`` (rank r's has ``sizes[r]`` rows) in rank order."""
        padded = torch.zeros(max(sizes), dtype=torch.float64, device=self.comm_device)
        padded[: len(part)] = torch.from_numpy(np.asarray(part, dtype=np.float64))
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return np.concatenate([p[:n].cpu().numpy() for p, n in zip(parts, sizes)])

    def sync_buffers(self, model: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

        DDP broadcasts them at the start of each training forward, so after a step each rank holds
        rank 0's statistics updated with its own batch; evaluation must use rank 0's.
        """
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.parallel:
            dist.barrier()


SINGLE = Ranks()  # one process: every method above is a no-op or a plain call
