"""Running a trained network on patches: batched prediction with test-time augmentation.

One implementation for every stage that applies a fold model (training's validation, embeddings,
explain, predict), so a probability means the same thing wherever it is computed. Where it runs
(device, mixed precision, memory format) is ``landslide_dvc.core.devices``.

Test-time augmentation (``embed.tta``, and the bundle's ``tta`` in `landslide-dvc predict`): the
probabilities and pooled features are averaged over 1, 4 or 8 dihedral views of each patch
(4: identity, horizontal flip, vertical flip, 180-degree rotation; 8: all flips and 90-degree
rotations). A patch has no preferred orientation, so the views are equally valid inputs.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from landslide_dvc.core.devices import Device, autocast, to_memory_format
from landslide_dvc.core.errors import ParamError
from landslide_dvc.core.model import embed, resize_input
from landslide_dvc.core.params import params_section, require

TTA_VIEWS = (1, 4, 8)


def dihedral_views(x: torch.Tensor, n_views: int) -> list[torch.Tensor]:
    """``n_views`` (1, 4 or 8) dihedral transforms of a batch (N, C, H, W), identity first.

    4: identity, horizontal flip, vertical flip, 180-degree rotation (a closed group, so the mean
    over the views of a flipped patch is the mean over the views of the patch). 8: the four
    rotations of the patch and of its horizontal flip.
    """
    if n_views not in TTA_VIEWS:
        raise ParamError(f"tta={n_views} is not a number of dihedral views; use 1, 4 or 8")
    if n_views == 1:
        return [x]
    h_flip = torch.flip(x, dims=(-1,))
    if n_views == 4:
        return [x, h_flip, torch.flip(x, dims=(-2,)), torch.rot90(x, 2, dims=(-2, -1))]
    return [torch.rot90(v, k, dims=(-2, -1)) for v in (x, h_flip) for k in range(4)]


def view_mean(per_view: torch.Tensor, n_views: int) -> torch.Tensor:
    """Mean over the views of outputs stacked view-major ((V * N, ...) -> (N, ...)), in float64 and then
    back to float32, so the order of the views cannot change the result beyond float32 rounding."""
    if n_views == 1:
        return per_view
    stacked = per_view.reshape(n_views, -1, *per_view.shape[1:]).double()
    return stacked.mean(dim=0).to(per_view.dtype)


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
    tta: int = 1,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Landslide probabilities (N,) from the FC head, and optionally the pooled features (N, D).

    ``tta``: views per patch (1, 4 or 8); all views of a batch go through the network as one
    batch of ``tta * batch_size`` and their probabilities and features are averaged.
    """
    if tta not in TTA_VIEWS:
        raise ParamError(f"tta={tta} is not a number of dihedral views; use 1, 4 or 8")
    model.eval()
    probs, feats = [], []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc=progress, disable=progress is None, leave=False, file=sys.stderr, mininterval=1.0):
        x = images[start : start + batch_size].to(device, non_blocking=True)
        if tta > 1:
            x = torch.cat(dihedral_views(x, tta))
        with autocast(device):
            x = resize_input(to_memory_format(x, device), dim)
            features, logits = embed(model, x)
        probs.append(view_mean(torch.softmax(logits.float(), dim=1)[:, 1], tta).cpu())
        if with_features:
            feats.append(view_mean(features.float(), tta).cpu())
    prob = torch.cat(probs).numpy().astype(np.float64) if probs else np.empty(0)
    features_out = torch.cat(feats).numpy() if with_features and feats else None
    return prob, features_out


@params_section
class EmbedParams:
    """`embed:` section."""

    batch_size: int
    device: Device
    tta: int  # dihedral views averaged per patch: 1 (none), 4 (flips) or 8 (flips and rotations)
    threads: int = 2  # CPU intra-op threads (results depend on it); 0: torch's default

    def validate(self) -> None:
        require(self.batch_size >= 1, f"embed.batch_size={self.batch_size} must be >= 1")
        require(self.tta in TTA_VIEWS, f"embed.tta={self.tta} must be 1, 4 or 8 (dihedral views per patch)")
        require(self.threads >= 0, f"embed.threads={self.threads} must be >= 0 (0: torch's default)")
