"""Fold checkpoints: a state dict plus plain metadata, loadable with torch.load(weights_only=True)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.model import ModelParams, create_model

REQUIRED_META = ("backbone", "in_chans", "dim", "channels", "fold")


def write_checkpoint(path: Path, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write {'state_dict', 'meta'}; meta holds only str/int/float/bool/list values.

    The caller writes to a temporary path (``landslide_dvc.core.io.atomic_paths``) and renames it.
    """
    torch.save({"state_dict": state_dict, "meta": meta}, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint safely (no pickle code execution); clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path} not found; run `dvc repro` to train the fold models")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        reason = "it needs unsafe pickle globals" if "weights_only" in str(exc) or "Unpickl" in str(exc) else (
            "truncated or corrupt"
        )
        raise DataError(f"{path} is not a loadable checkpoint ({reason}); retrain it with `dvc repro -f` on its stage") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "meta" not in checkpoint:
        raise DataError(f"{path} is not a landslide-dvc checkpoint (no state_dict/meta); retrain it")
    missing = [k for k in REQUIRED_META if k not in checkpoint["meta"]]
    if missing:
        raise DataError(f"{path} metadata lacks {missing[0]!r}; retrain it")
    return checkpoint


def load_fold_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the fold's network from its checkpoint alone (never downloads weights)."""
    checkpoint = load_checkpoint(path)
    meta = checkpoint["meta"]
    params = ModelParams(
        backbone=str(meta["backbone"]),
        pretrained=False,
        checkpoint=None,
        dim=int(meta["dim"]),
        drop_rate=float(meta.get("drop_rate", 0.0)),
    )
    model = create_model(params, in_chans=int(meta["in_chans"]))
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError:
        raise DataError(f"{path} does not match model {meta['backbone']} with {meta['in_chans']} channels; retrain it") from None
    model.eval()
    return model, meta
