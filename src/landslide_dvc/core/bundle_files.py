"""The model bundle's files: manifest, sha256 checks and safetensors weights.

A bundle is of one of two kinds, named by the manifest's ``kind``: ``classifier`` (the Zindi
pipeline's window classifier; a manifest without ``kind``, as bundles exported before the
segmentation kind have, is one) or ``segmentation`` (the Landslide4Sense U-Net). The `export` and
`export_seg` stages write them (`landslide_dvc.pipeline.export`, `.export_seg`) and
`landslide-dvc predict` loads either (`landslide_dvc.serve.bundle`); all go through these
definitions of the layout, the sha256 rules included.

Classifier layout:
  manifest.json          backbone, input size, channel set and recipe, optical scale, normalisation
                         centre/scale per channel (as `normalize` fitted them), fold count, head,
                         threshold, TTA views, package version, and the sha256 of every other file
  folds/fold_K.safetensors   fold K's network weights (safetensors: tensors only, no code)
  heads/fold_K.skops         svm head: StandardScaler + SVC, skops' secure format
  heads/fold_K.lgbm.txt      lgbm head: LightGBM's own text model format
  heads/fold_K.logreg.skops  logreg head: StandardScaler + LogisticRegression, skops' secure format
  (each head's file name is its `core.heads.HEAD_KINDS` entry's)
(the fc head is the network's own classifier and has no head files)
Segmentation layout (`landslide_dvc.core.seg_bundle_files`):
  manifest.json          raw bands, channel set and recipe, normalisation centre/scale, window,
                         threshold, U-Net architecture, TTA views, package version, sha256s
  unet.safetensors       the U-Net's weights"""

from __future__ import annotations

import json
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.io import file_sha256
from landslide_dvc.core.mapping_rules import MappingRules

BUNDLE_FORMAT = 1


MANIFEST = "manifest.json"

CLASSIFIER = "classifier"
SEGMENTATION = "segmentation"
BUNDLE_KINDS = (CLASSIFIER, SEGMENTATION)
# How a kind's overlapping windows make a scene map (`serve.blend`): a classifier's window score says
# "a landslide somewhere in this window", so a pixel keeps the lowest score over it (the intersection
# of the positive windows); the U-Net predicts each pixel, and its tiles are blended.
DEFAULT_WINDOW_COMBINATION = {CLASSIFIER: "intersection", SEGMENTATION: "blend"}


CHANNEL_RECIPE = "landslide_dvc.core.channels.raw_to_channels"  # optical / optical_scale, then derived channels


class ManifestFields:
    """What every kind of loaded bundle reads from its manifest (``self.manifest``)."""

    manifest: dict[str, Any]
    kind: str  # CLASSIFIER or SEGMENTATION (each loaded bundle's class sets it)
    _rule_overrides: dict[str, Any] = {}  # noqa: RUF012 - replaced, never changed in place (override_rules)
    _window_combination: str | None = None  # predict's --windows (override_window_combination)

    @property
    def bands(self) -> list[str]:
        """The raw bands a patch or scene must have, in order."""
        return [str(b) for b in self.manifest["bands"]]

    @property
    def threshold(self) -> float:
        """Probability at or above which a patch or pixel is a landslide."""
        return float(self.manifest["threshold"])

    @property
    def tta(self) -> int:
        """Test-time augmentation views averaged per patch or pixel."""
        return int(self.manifest["tta"])

    @property
    def rules(self) -> MappingRules:
        """The mapping rules of a scene's polygons: the manifest's (chosen on validation data by the stage that
        wrote it), with predict's options over them (`override_rules`); the threshold alone where it has none."""
        record = {**self.manifest.get("mapping_rules", {}), **self._rule_overrides}
        record.pop("slope_band", None)  # which band, not a rule
        return MappingRules(self.threshold, **record)

    def override_rules(self, **changes: Any) -> None:
        """Predict's options over the manifest's rules (``min_area_m2``, ``min_slope``, ``fill_holes_m2``)."""
        unknown = set(changes) - {"min_area_m2", "min_slope", "fill_holes_m2"}
        if unknown:
            raise ValueError(f"no mapping rule named {', '.join(sorted(unknown))}")
        self._rule_overrides = {**self._rule_overrides, **changes}

    @property
    def window_combination(self) -> str:
        """How overlapping windows make a scene's map: "blend" or "intersection" (the kind's default, or predict's option)."""
        return self._window_combination or DEFAULT_WINDOW_COMBINATION[self.kind]

    def override_window_combination(self, combination: str) -> None:
        self._window_combination = combination

    def slope_band(self) -> str | None:
        """The scene band the slope rule reads, where the rules have a slope limit."""
        if self.rules.min_slope is None:
            return None
        return str(self.manifest.get("mapping_rules", {}).get("slope_band", "slope"))


def package_version() -> str:
    try:
        return metadata.version("landslide-dvc")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def save_weights(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(path))


def load_weights(path: Path, fix: str = "`dvc repro export`") -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        raise DataError(
            f"{path} is not a safetensors file (the bundle loads no pickled weights); re-export with {fix}"
        ) from None


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise DataError(f"{path} is not a model bundle (no {MANIFEST}); build one with `dvc repro export`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{manifest_path} is not valid JSON; re-export the bundle with `dvc repro export`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise DataError(f"{manifest_path} is not a format-{BUNDLE_FORMAT} bundle manifest; re-export the bundle")
    return manifest


def bundle_kind(path: Path, manifest: dict[str, Any]) -> str:
    """The manifest's kind; a manifest without one is a classifier's (bundles exported before the kind existed)."""
    kind = manifest.get("kind", CLASSIFIER)
    if kind not in BUNDLE_KINDS:
        raise DataError(
            f"{path / MANIFEST} has kind {kind!r}; predict loads {' and '.join(repr(k) for k in BUNDLE_KINDS)} "
            f"bundles: re-export it, or update landslide-dvc to the version that wrote it ({manifest.get('package_version')})"
        )
    return str(kind)


def export_command(manifest: dict[str, Any]) -> str:
    """The command that writes a bundle of this manifest's kind again (for the fix in an error)."""
    return "`dvc repro l4s/dvc.yaml:export_seg`" if manifest.get("kind") == SEGMENTATION else "`dvc repro export`"


def weight_files(path: Path, manifest: dict[str, Any]) -> set[str]:
    """The files a bundle's networks and heads load from, by kind."""
    if bundle_kind(path, manifest) == SEGMENTATION:
        return {manifest["weights"]}
    return {f["weights"] for f in manifest["folds"]} | {f["head"] for f in manifest["folds"] if "head" in f}


def verify_files(path: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists exists and matches its sha256."""
    fix = export_command(manifest)
    for name, expected in manifest["files"].items():
        file = path / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not file.is_file():
            raise DataError(f"{file} listed in {path / MANIFEST} is missing; re-export the bundle with {fix}")
        if file_sha256(file) != expected:
            raise DataError(
                f"{file} does not match its sha256 in {path / MANIFEST} (changed or corrupt); refusing the bundle: "
                f"re-export it with {fix} or copy it again"
            )
    listed = set(manifest["files"])
    needed = weight_files(path, manifest)
    if needed - listed:
        raise DataError(f"{path / MANIFEST} uses {sorted(needed - listed)[0]} without its sha256; re-export the bundle")
