"""Process-wide settings a run depends on: random seeds, torch's thread count and the allocator's behaviour."""

from __future__ import annotations

import ctypes
import random
import sys

import numpy as np
import torch


def seed_everything(*keys: int) -> None:
    """Seed python, numpy (timm's Mixup draws from it) and torch from a tuple of integers."""
    seed = int(np.random.SeedSequence(list(keys)).generate_state(1)[0])
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def use_threads(threads: int) -> None:
    """Run torch's CPU kernels on exactly ``threads`` intra-op threads (0: leave torch's own choice).

    Convolutions and reductions split their sums between the threads, so the last bits of a CPU
    run depend on the count (1 and 2 threads differ by up to ~1e-3 in a fold's probabilities): a
    parameter, not the machine's core count or OMP_NUM_THREADS, must decide it.
    """
    if threads == 0:
        return
    torch.set_num_threads(threads)
    try:  # inter-op threads only run independent ops side by side: no effect on results
        if torch.get_num_interop_threads() != threads:
            torch.set_num_interop_threads(threads)
    except RuntimeError:  # settable once per process, before any inter-op work (a second run in-process)
        pass


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
