"""Where a network runs: device choice, the GPU claims of `cuda:auto`, mixed precision and memory format.

Device choice (``train.device``, ``embed.device``, ``explain.device``, ``seg.device``, ``predict --device``):
``auto`` (CUDA when there is one), ``cpu``, ``cuda``, or ``cuda:auto``: a GPU that no other process of this
project holds. A ``cuda:auto`` process takes an exclusive ``flock`` on a per-GPU lock file and keeps it
until it exits, so `dvc queue start -j N` on an N-GPU machine puts each running stage on its own GPU."""

from __future__ import annotations

import fcntl
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Literal

import torch
from torch import nn

from landslide_dvc.core.errors import ParamError

Device = Literal["auto", "cpu", "cuda", "cuda:auto"]


LOCK_DIR_ENV = "LANDSLIDE_GPU_LOCK_DIR"


def gpu_lock_dir() -> Path:
    """Where the per-GPU lock files live: $LANDSLIDE_GPU_LOCK_DIR, else a folder in the system temp dir.

    Outside the repository on purpose: `dvc queue` runs each experiment in its own copy of it.
    """
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "landslide-gpu-locks")


class GpuLocks:
    """Exclusive claims on GPUs through one lock file per GPU (``fcntl.flock``).

    The kernel drops a process's locks when it exits, however it exits (SIGKILL included), so
    no claim outlives its process. Locks are per open file: a second ``GpuLocks`` in the same
    process competes like another process would.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.held: dict[str, IO[str]] = {}

    def try_claim(self, gpu_ids: list[str]) -> int | None:
        """Index of the first GPU in ``gpu_ids`` this object holds or could lock now; None if all are taken."""
        for index, gpu_id in enumerate(gpu_ids):
            if gpu_id in self.held:
                return index
        self.folder.mkdir(parents=True, exist_ok=True)
        for index, gpu_id in enumerate(gpu_ids):
            handle = open(self.folder / f"{gpu_id}.lock", "a+")  # noqa: SIM115 - held for the process lifetime
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} in {os.getcwd()}\n")  # who holds it, for a curious user
            handle.flush()
            self.held[gpu_id] = handle
            return index
        return None

    def claim(self, gpu_ids: list[str], param: str, *, poll_s: float = 5.0, wait_s: float | None = None) -> int:
        """Wait until one of ``gpu_ids`` is free and claim it (``wait_s``: give up after that long)."""
        if not gpu_ids:
            raise ParamError(f"{param}=cuda:auto but no CUDA device is available; use auto or cpu")
        start = time.monotonic()
        announced = False
        while (index := self.try_claim(gpu_ids)) is None:
            if wait_s is not None and time.monotonic() - start >= wait_s:
                raise ParamError(
                    f"{param}=cuda:auto found all {len(gpu_ids)} GPUs taken for {wait_s:g} s (locks in "
                    f"{self.folder}); run fewer experiments at once (dvc queue start -j)"
                )
            if not announced:
                print(f"{param}=cuda:auto: all {len(gpu_ids)} GPUs are taken by other runs (locks in "
                      f"{self.folder}); waiting for one to free up", file=sys.stderr)
                announced = True
            time.sleep(poll_s)
        return index


_PROCESS_LOCKS: dict[Path, GpuLocks] = {}  # this process's claims, kept until it exits


def _process_gpu_locks() -> GpuLocks:
    folder = gpu_lock_dir()
    return _PROCESS_LOCKS.setdefault(folder, GpuLocks(folder))


def visible_gpu_ids() -> list[str]:
    """A stable name per visible GPU: its UUID, so CUDA_VISIBLE_DEVICES renumbering cannot alias two GPUs."""
    ids = []
    for index in range(torch.cuda.device_count()):
        uuid = getattr(torch.cuda.get_device_properties(index), "uuid", None)
        ids.append(f"GPU-{uuid}" if uuid is not None else f"cuda{index}")
    return ids


def select_device(preference: str, param: str, *, rank: int | None = None) -> torch.device:
    """The device asked for by ``param`` (e.g. ``train.device``): cuda when asked or available (auto).

    ``rank``: the local rank of a data-parallel worker, which takes GPU ``rank`` (under ``auto`` and
    ``cuda``); ``cuda:auto`` claims a free GPU whatever the rank.
    """
    if preference in ("cuda", "cuda:auto") and not torch.cuda.is_available():
        raise ParamError(f"{param}={preference} but no CUDA device is available; use auto or cpu")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if preference == "cuda:auto":
        return _make_current(torch.device("cuda", _process_gpu_locks().claim(visible_gpu_ids(), param)))
    if rank is None:
        return torch.device("cuda")
    if rank >= torch.cuda.device_count():
        raise ParamError(
            f"rank {rank} has no GPU of its own ({torch.cuda.device_count()} visible); lower train.nproc "
            f"to the number of GPUs, or set {param}=cuda:auto"
        )
    return _make_current(torch.device("cuda", rank))


def _make_current(device: torch.device) -> torch.device:
    """Make ``device`` the process's current GPU, so no stray allocation opens a context on GPU 0."""
    torch.cuda.set_device(device)
    return device


def autocast(device: torch.device) -> Any:
    """bf16 autocast on CUDA; plain float32 on CPU (deterministic, and faster there)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def to_memory_format(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """channels-last on CUDA (what cuDNN's fast convolutions want); unchanged on CPU."""
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def prepare_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Move a network to ``device`` in the memory format its inputs will have."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model
