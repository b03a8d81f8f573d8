"""The segmentation bundle's own parts: its weights file, channel recipe and U-Net architecture.

`export_seg` (`landslide_dvc.pipeline.export_seg`) writes a segmentation bundle from the
`train_seg` U-Net and `landslide-dvc predict` (`landslide_dvc.serve.seg_bundle`) loads it; the
manifest, sha256 and safetensors rules are the classifier bundle's (`landslide_dvc.core.bundle_files`).
Both sides rebuild the network from the manifest's architecture record through
`landslide_dvc.core.segmentation.build_unet`, the function `train_seg` trained it with, so the
weights fit the same module tree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.segmentation import SegParams, build_unet

SEG_WEIGHTS = "unet.safetensors"
SEG_CHANNEL_RECIPE = "landslide_dvc.core.l4s_channels.derive_l4s_channels"  # bands as released, then differences
SEG_MODEL = "segmentation_models_pytorch.Unet"
SEG_PROBABILITY = "sigmoid of the one output logit per pixel"  # as core.segmentation.predict_probabilities

# build_unet reads only the architecture fields of a SegParams; these fill the training-only ones.
_TRAINING_PLACEHOLDERS: dict[str, Any] = {
    "loss": "dice_bce", "pos_weight": 1.0, "epochs": 1, "batch_size": 1, "lr": 1.0, "weight_decay": 0.0,
    "flips": False, "threshold": 0.5, "val_fold": 0, "n_examples": 1, "eval_batch_size": 1, "seed": 0, "device": "cpu",
}


@dataclass(frozen=True)
class UNetArchitecture:
    """What rebuilds the trained U-Net: the `seg.*` architecture keys and the input channel count."""

    encoder: str
    encoder_depth: int
    decoder_channels: tuple[int, ...]
    in_chans: int

    def record(self) -> dict[str, Any]:
        """The manifest's ``architecture`` entry."""
        return {
            "model": SEG_MODEL, "encoder": self.encoder, "encoder_depth": self.encoder_depth,
            "decoder_channels": list(self.decoder_channels), "in_chans": self.in_chans, "classes": 1,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], source: Path) -> UNetArchitecture:
        """The architecture of a manifest entry or a unet.pt meta; a missing or mistyped key names ``source``."""
        try:
            arch = cls(
                encoder=str(record["encoder"]), encoder_depth=int(record["encoder_depth"]),
                decoder_channels=tuple(int(c) for c in record["decoder_channels"]), in_chans=int(record["in_chans"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{source} has no usable U-Net architecture ({type(exc).__name__}: {exc})") from None
        if record.get("model", SEG_MODEL) != SEG_MODEL or int(record.get("classes", 1)) != 1:
            raise DataError(f"{source} describes a {record.get('model')} with {record.get('classes')} classes, not {SEG_MODEL} with 1")
        return arch

    def build(self) -> nn.Module:
        """The U-Net with random weights, as `train_seg` built it (load the trained ones into it)."""
        params = SegParams(
            encoder=self.encoder, encoder_depth=self.encoder_depth, decoder_channels=list(self.decoder_channels),
            **_TRAINING_PLACEHOLDERS,
        )
        return build_unet(params, in_chans=self.in_chans)
