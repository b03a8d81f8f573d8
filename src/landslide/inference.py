"""Running a trained network: device choice, mixed precision, memory format and batched prediction.

One implementation for every stage that applies a fold model (training's validation, embeddings,
explain, predict), so a probability means the same thing wherever it is computed.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from landslide.errors import ParamError
from landslide.model import embed, resize_input


def select_device(preference: str, param: str) -> torch.device:
    """The device asked for by ``param`` (e.g. ``train.device``): cuda when asked or available (auto)."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise ParamError(f"{param}=cuda but no CUDA device is available; use auto or cpu")
    if preference == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


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
        with autocast(device):
            x = resize_input(to_memory_format(x, device), dim)
            features, logits = embed(model, x)
        probs.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu())
        if with_features:
            feats.append(features.float().cpu())
    prob = torch.cat(probs).numpy().astype(np.float64) if probs else np.empty(0)
    features_out = torch.cat(feats).numpy() if with_features and feats else None
    return prob, features_out
