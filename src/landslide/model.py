"""The backbone: a timm model with `in_chans` input channels and a 2-class head.

Pretrained ImageNet weights come only from places that need no network: the Hugging Face hub
cache or a local file (``model.checkpoint``, passed to timm through ``pretrained_cfg_overlay``).
timm adapts the first convolution to 12/20/28 channels. When neither source has the weights the
stage stops at once with a message naming both options, instead of retrying a download.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Set before timm (and huggingface_hub) are imported: the hub client then never goes online,
# so missing weights fail in milliseconds. A user who wants downloads can export HF_HUB_OFFLINE=0.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from landslide.errors import ParamError  # noqa: E402
from landslide.params import require  # noqa: E402

NUM_CLASSES = 2


@dataclass(frozen=True)
class ModelParams:
    """`model:` section."""

    backbone: str  # any timm model name, e.g. tf_efficientnetv2_l (the paper), mobilenetv3_small_100
    pretrained: bool  # ImageNet weights from the hub cache or `checkpoint`
    checkpoint: str | None  # local weights file (.safetensors/.pth) used when pretrained is true
    dim: int  # input size: 64 px patches are resized to dim x dim on the fly (paper: 256)
    drop_rate: float  # dropout before the classifier

    def validate(self) -> None:
        require(self.dim >= 32, f"model.dim={self.dim} must be >= 32 pixels")
        require(0.0 <= self.drop_rate < 1.0, f"model.drop_rate={self.drop_rate} must be in [0, 1)")
        require(
            timm.is_model(self.backbone),
            f"model.backbone={self.backbone} is not a timm model name; pick one from timm.list_models()",
        )


def _hub_has_weights(hub_id: str, filename: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    names = [filename] if filename else ["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
    return any(isinstance(try_to_load_from_cache(hub_id, name), str) for name in names)


def check_pretrained_available(params: ModelParams) -> None:
    """Fail fast, with both remedies, when ImageNet weights cannot be had offline."""
    remedy = (
        "put them in the Hugging Face hub cache (e.g. `huggingface-cli download timm/<name>` on a machine "
        "with internet, then copy ~/.cache/huggingface), or set model.checkpoint to a local weights file; "
        "or set model.pretrained: false"
    )
    if params.checkpoint:
        if not Path(params.checkpoint).is_file():
            raise ParamError(f"model.checkpoint={params.checkpoint} does not exist; {remedy}")
        return
    cfg = timm.models.get_pretrained_cfg(params.backbone)
    if cfg is None:
        raise ParamError(f"timm has no pretrained weights for model.backbone={params.backbone}; {remedy}")
    cfg_dict = cfg.to_dict()
    hub_id = cfg_dict.get("hf_hub_id")
    if hub_id and _hub_has_weights(hub_id, cfg_dict.get("hf_hub_filename")):
        return
    url = cfg_dict.get("url")
    if url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if cached.is_file():
            return
    raise ParamError(
        f"ImageNet weights for model.backbone={params.backbone} are not available offline "
        f"(hub id {hub_id or '-'} not in the hub cache); {remedy}"
    )


def create_model(params: ModelParams, in_chans: int) -> nn.Module:
    """timm.create_model with the project's head, channels and (optional) pretrained weights."""
    kwargs: dict = {"in_chans": in_chans, "num_classes": NUM_CLASSES, "drop_rate": params.drop_rate}
    if params.pretrained:
        check_pretrained_available(params)
        kwargs["pretrained"] = True
        if params.checkpoint:
            kwargs["pretrained_cfg_overlay"] = {"file": str(params.checkpoint)}
    try:
        return timm.create_model(params.backbone, **kwargs)
    except (RuntimeError, OSError, ValueError) as exc:
        if params.pretrained:
            raise ParamError(
                f"could not load pretrained weights for model.backbone={params.backbone}: "
                f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
            ) from None
        raise


def resize_input(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Resize a batch of 64 px patches to dim x dim on the fly (never stored at that size)."""
    if x.shape[-1] == dim and x.shape[-2] == dim:
        return x
    return F.interpolate(x, size=(dim, dim), mode="bilinear", align_corners=False)


def embed(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled penultimate features (what timm calls pre-logits) and the FC head's logits."""
    features = model.forward_head(model.forward_features(x), pre_logits=True)
    return features, model.get_classifier()(features)
