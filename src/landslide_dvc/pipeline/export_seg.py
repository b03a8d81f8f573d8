"""The segmentation bundle (`export_seg` stage, l4s/dvc.yaml -> l4s/models/seg_bundle/): the
`train_seg` U-Net with everything `landslide-dvc predict` needs to map a scene, pickle-free.

The manifest, sha256 and safetensors rules are the classifier bundle's (`landslide_dvc.core.bundle_files`),
with ``"kind": "segmentation"``. It records the raw bands a scene must have, the channel set and
the normalisation statistics `normalize` fitted (train.h5's attributes), the window (the patch
size the U-Net was trained on), the threshold and architecture from unet.pt's metadata, and the
test-time augmentation views (``export_seg.tta``).

unet.pt is read with ``torch.load(weights_only=True)``; the weights are written with safetensors,
read back and compared with unet.pt's tensor by tensor, and loaded into a U-Net rebuilt from the
manifest's architecture record, before the bundle is published (atomically).

**Mapping rules chosen on validation data** (``seg_rules``): the bundle, as predict loads it,
maps the validation patches that train_seg validated on (ValidData where it has masks, else the
held-out fold ``seg.val_fold``), with its TTA views. The threshold, minimum mapping unit and slope
limit of the best object F1 over the grid (`landslide_dvc.core.mapping_rules.tune_rules`) become the
manifest's ``threshold`` and ``mapping_rules``, predict's defaults; the threshold of the best pixel
F1 and both scores are recorded under ``tuning``. The slope limit is in the release's own (rescaled)
slope units: the Landslide4Sense release does not publish the constants that would give degrees.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landslide_dvc.core.bands import L4S_BANDS
from landslide_dvc.core.bundle_files import (
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
from landslide_dvc.core.mapping_rules import RuleGrid, tune_rules
from landslide_dvc.core.params import params_section, require
from landslide_dvc.core.seg_bundle_files import SEG_CHANNEL_RECIPE, SEG_PROBABILITY, SEG_WEIGHTS, UNetArchitecture
from landslide_dvc.core.segmentation import SegData
from landslide_dvc.pipeline.h5data import load_split

UNET_META = ("encoder", "encoder_depth", "decoder_channels", "in_chans", "channels", "size", "threshold")


@params_section
class RuleTuningParams:
    """`seg_rules:` section (l4s/params.yaml): the candidates of the mapping rules chosen on the validation patches."""

    tune: bool  # false: threshold seg.threshold alone, no rules
    thresholds: list[float]
    min_areas_m2: list[float]
    slope_quantiles: list[float]  # slope limits at these quantiles of the validation pixels' slope (0: none)
    fill_holes_m2: float
    pixel_size_m: float  # the patches' ground sampling distance

    def validate(self) -> None:
        require(bool(self.thresholds) and all(0 < t < 1 for t in self.thresholds),
                f"seg_rules.thresholds={self.thresholds} must be probabilities strictly between 0 and 1")
        require(bool(self.min_areas_m2) and all(a >= 0 for a in self.min_areas_m2),
                f"seg_rules.min_areas_m2={self.min_areas_m2} must be areas >= 0")
        require(bool(self.slope_quantiles) and all(0 <= q < 1 for q in self.slope_quantiles),
                f"seg_rules.slope_quantiles={self.slope_quantiles} must lie in [0, 1)")
        require(self.fill_holes_m2 >= 0, f"seg_rules.fill_holes_m2={self.fill_holes_m2} must be >= 0")
        require(self.pixel_size_m > 0, f"seg_rules.pixel_size_m={self.pixel_size_m} must be > 0")

    def grid(self) -> RuleGrid:
        return RuleGrid(self.thresholds, self.min_areas_m2, self.slope_quantiles, self.fill_holes_m2)


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


def validation_slope(validation: SegData, manifest: dict[str, Any]) -> np.ndarray | None:
    """The validation patches' slope channel (N, H, W) in the release's units (normalisation undone), if any."""
    channels = list(manifest["channels"])
    if "slope" not in channels:
        return None
    k = channels.index("slope")
    normalization = manifest["normalization"]
    return validation.val_images[:, k] * np.float32(normalization["scale"][k]) + np.float32(normalization["center"][k])


def tune_bundle_rules(bundle_dir: Path, manifest: dict[str, Any], validation: SegData, params: RuleTuningParams) -> dict[str, Any]:
    """The rules of the best object F1 on the validation patches, mapped by the bundle as predict loads it."""
    from landslide_dvc.serve.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    probability = bundle.predict_tiles(validation.val_images, torch.device("cpu"), bundle.default_batch_size).probability
    result = tune_rules(probability, validation.val_masks, params.pixel_size_m**2, params.grid(), validation_slope(validation, manifest))
    return {"validation": validation.validation, "val_images": len(validation.val_images), **result}


def run_export_seg(
    params: ExportSegParams, *, model_path: Path, train_path: Path, out_dir: Path,
    rules: RuleTuningParams | None = None, validation: SegData | None = None,
) -> dict[str, Any]:
    """The stage: assemble the segmentation bundle in ``out_dir`` (atomically) and return its manifest.

    ``rules`` and ``validation``: the rules' candidates and the patches they are chosen on (no rules without them)."""
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
        if rules is not None and rules.tune:
            if validation is None:
                raise DataError("seg_rules.tune needs the validation patches (data/normalized/test.h5 with masks)")
            tuning = tune_bundle_rules(tmp, manifest, validation, rules)
            chosen = tuning["object"]
            manifest["threshold"] = chosen["threshold"]
            manifest["mapping_rules"] = {
                "min_area_m2": chosen["min_area_m2"], "min_slope": chosen["min_slope"],
                "fill_holes_m2": chosen["fill_holes_m2"], "slope_band": "slope",
            }
            manifest["tuning"] = tuning
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
