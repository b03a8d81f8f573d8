"""Process-wide settings a run depends on: random seeds and the allocator's behaviour."""

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
