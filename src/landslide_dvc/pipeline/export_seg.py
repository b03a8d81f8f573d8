"""The segmentation bundle (`export_seg` stage, l4s/dvc.yaml -> l4s/models/seg_bundle/): the
`train_seg` U-Net with everything `landslide-dvc predict` needs to map a scene, pickle-free.

The manifest, sha256 and safetensors rules are the classifier bundle's (`landslide_dvc.core.bundle`),
with ``"kind": "segmentation"``. It records the raw bands a scene must have, the channel set and
the normalisation statistics `normalize` fitted (train.h5's attributes), the window (the patch
size the U-Net was trained on), the threshold and architecture from unet.pt's metadata, and the
test-time augmentation views (``export_seg.tta``).

unet.pt is read with ``torch.load(weights_only=True)``; the weights are written with safetensors,
read back and compared with unet.pt's tensor by tensor, and loaded into a U-Net rebuilt from the
manifest's architecture record, before the bundle is published (atomically).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from landslide_dvc.core.bands import L4S_BANDS
from landslide_dvc.core.bundle import (
    BUNDLE_FORMAT,
    MANIFEST,
    SEGMENTATION,
    load_weights,
    package_version,
    save_weights,
)
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.inference import TTA_VIEWS
from landslide_dvc.core.io import atomic_path, file_sha256
from landslide_dvc.core.params import params_section, require
from landslide_dvc.core.seg_bundle import SEG_CHANNEL_RECIPE, SEG_PROBABILITY, SEG_WEIGHTS, UNetArchitecture
from landslide_dvc.pipeline.h5data import load_split

UNET_META = ("encoder", "encoder_depth", "decoder_channels", "in_chans", "channels", "size", "threshold")


@params_section
class ExportSegParams:
    """`export_seg:` section (l4s/params.yaml)."""

    tta: int  # dihedral views averaged per pixel: 1 (none), 4 (flips) or 8 (flips and rotations)

    def validate(self) -> None:
        require(self.tta in TTA_VIEWS, f"export_seg.tta={self.tta} must be 1, 4 or 8 (dihedral views per pixel)")


def load_unet_checkpoint(path: Path) -> dict[str, Any]:
    """unet.pt as `train_seg` wrote it ({state_dict, meta}), loaded without running pickle code."""
    if not path.is_file():
        raise DataError(f"{path} not found; run `dvc repro l4s/dvc.yaml:train_seg` first")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files
        reason = "it needs unsafe pickle globals" if "weights_only" in str(exc) or "Unpickl" in str(exc) else "truncated or corrupt"
        raise DataError(f"{path} is not a loadable U-Net checkpoint ({reason}); retrain it with `dvc repro -f train_seg`") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict) or "meta" not in checkpoint:
        raise DataError(f"{path} is not a train_seg checkpoint (no state_dict/meta); retrain it with `dvc repro -f train_seg`")
    missing = [k for k in UNET_META if k not in checkpoint["meta"]]
    if missing:
        raise DataError(f"{path} metadata lacks {missing[0]!r}; retrain it with `dvc repro -f train_seg`")
    return checkpoint


def check_checkpoint_fits(model_path: Path, meta: dict[str, Any], train: Any, train_path: Path) -> None:
    """unet.pt was trained on train.h5's channels and patch size (else the statistics would not be its own)."""
    if train.attrs.get("format") != "l4s":
        raise DataError(f"{train_path} is not a Landslide4Sense split (data.format is not l4s); rerun `dvc repro normalize`")
    if list(meta["channels"]) != train.channels or int(meta["in_chans"]) != len(train.channels):
        raise DataError(
            f"{model_path} was trained on {len(meta['channels'])} channels, {train_path} has {len(train.channels)} "
            f"({', '.join(train.channels[:3])}, ...); rerun `dvc repro train_seg`"
        )
    if int(meta["size"]) != int(train.attrs["patch_size"]):
        raise DataError(f"{model_path} was trained on {meta['size']} px patches, {train_path} holds {train.attrs['patch_size']} px; rerun `dvc repro train_seg`")


def run_export_seg(params: ExportSegParams, *, model_path: Path, train_path: Path, out_dir: Path) -> dict[str, Any]:
    """The stage: assemble the segmentation bundle in ``out_dir`` (atomically) and return its manifest."""
    checkpoint = load_unet_checkpoint(model_path)
    meta, state_dict = checkpoint["meta"], checkpoint["state_dict"]
    train = load_split(train_path, with_images=False)
    check_checkpoint_fits(model_path, meta, train, train_path)
    architecture = UNetArchitecture.from_record(meta, model_path)
    with atomic_path(out_dir, directory=True) as tmp:
        save_weights(state_dict, tmp / SEG_WEIGHTS)
        reloaded = load_weights(tmp / SEG_WEIGHTS)
        if reloaded.keys() != state_dict.keys() or not all(torch.equal(reloaded[k], state_dict[k]) for k in state_dict):
            raise DataError(f"{tmp / SEG_WEIGHTS} does not read back as {model_path}'s weights; rerun `dvc repro -f export_seg`")
        try:
            architecture.build().load_state_dict(reloaded)
        except RuntimeError:
            raise DataError(f"{model_path}'s weights do not fit its own architecture record; retrain it with `dvc repro -f train_seg`") from None
        manifest = {
            "format": BUNDLE_FORMAT,
            "kind": SEGMENTATION,
            "package": "landslide-dvc",
            "package_version": package_version(),
            "bands": list(L4S_BANDS),
            "channels": train.channels,
            "n_channels": len(train.channels),
            "channel_recipe": SEG_CHANNEL_RECIPE,
            "input_scale": "the Landslide4Sense release's rescaled bands (means near 0, standard deviations near 1)",
            "normalization": {
                "method": str(train.attrs["method"]),
                "center": [float(v) for v in train.attrs["center"]],
                "scale": [float(v) for v in train.attrs["scale"]],
            },
            "window": int(meta["size"]),
            "threshold": float(meta["threshold"]),
            "architecture": architecture.record(),
            "probability": SEG_PROBABILITY,
            "tta": params.tta,
            "weights": SEG_WEIGHTS,
            "files": {str(p.relative_to(tmp)): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()},
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
