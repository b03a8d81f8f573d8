"""The backbone: a timm model with `in_chans` input channels and a 2-class head.

Pretrained ImageNet weights come only from places that need no network: a local file
(``model.checkpoint``), the Hugging Face hub cache or the torch hub cache. The file must hold the
backbone's tensors under timm's key names; timm adapts the first convolution to 12/20/28 channels
and the 1000-class head is replaced. When no source has the weights the stage stops at once with a
message naming the options, instead of retrying a download. ``WeightsProvenance`` records the
source, the file's sha256 and the stem adaptation.
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

from landslide_dvc.core.errors import ParamError  # noqa: E402
from landslide_dvc.core.io import file_sha256
from landslide_dvc.core.params import params_section, require  # noqa: E402

NUM_CLASSES = 2


@params_section
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


WEIGHTS_NONE = "none"  # model.pretrained: false, random initialisation


@dataclass(frozen=True)
class WeightsProvenance:
    """Where a model's initial weights came from, recorded in the fold checkpoint and its metrics."""

    source: str  # model.checkpoint, hf-hub-cache, torch-hub-cache or none
    file: str  # the weights file read ("" for none)
    sha256: str  # of that file ("" for none)
    stem: str  # how the first convolution got its in_chans input weights

    def as_meta(self) -> dict[str, str]:
        return {
            "weights_source": self.source,
            "weights_file": self.file,
            "weights_sha256": self.sha256,
            "weights_stem": self.stem,
        }


def _hub_cached_file(hub_id: str, filename: str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    names = [filename] if filename else ["model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"]
    for name in names:
        found = try_to_load_from_cache(hub_id, name)
        if isinstance(found, str):
            return Path(found)
    return None


def locate_weights(params: ModelParams) -> tuple[str, Path]:
    """The source and file of the ImageNet weights, found offline; fails fast with both remedies."""
    remedy = (
        "put them in the Hugging Face hub cache (e.g. `huggingface-cli download timm/<name>` on a machine "
        "with internet, then copy ~/.cache/huggingface), or set model.checkpoint to a local weights file; "
        "or set model.pretrained: false"
    )
    if params.checkpoint:
        if not Path(params.checkpoint).is_file():
            raise ParamError(f"model.checkpoint={params.checkpoint} does not exist; {remedy}")
        return "model.checkpoint", Path(params.checkpoint)
    cfg = timm.models.get_pretrained_cfg(params.backbone)
    if cfg is None:
        raise ParamError(f"timm has no pretrained weights for model.backbone={params.backbone}; {remedy}")
    cfg_dict = cfg.to_dict()
    hub_id = cfg_dict.get("hf_hub_id")
    if hub_id:
        cached = _hub_cached_file(hub_id, cfg_dict.get("hf_hub_filename"))
        if cached is not None:
            return "hf-hub-cache", cached
    url = cfg_dict.get("url")
    if url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
        if cached.is_file():
            return "torch-hub-cache", cached
    raise ParamError(
        f"ImageNet weights for model.backbone={params.backbone} are not available offline "
        f"(hub id {hub_id or '-'} not in the hub cache); {remedy}"
    )


def _names(cfg: dict, key: str) -> tuple[str, ...]:
    value = cfg.get(key) or ()
    return (value,) if isinstance(value, str) else tuple(value)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch file (torch.load with weights_only: nothing unpickled)."""
    try:
        state_dict = timm.models.load_state_dict(str(path), use_ema=False, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - safetensors and torch raise many types for bad files
        raise ParamError(
            f"{path} is not a readable weights file ({type(exc).__name__}); give a .safetensors or a "
            "weights-only .pth state dict"
        ) from None
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ParamError(f"{path} does not hold a state dict of tensors; give a .safetensors or a weights-only .pth")
    return state_dict


def check_weights_fit(model: nn.Module, state_dict: dict[str, torch.Tensor], path: Path, backbone: str) -> None:
    """The file must hold exactly the backbone's tensors (the classifier may differ: it is replaced)."""
    classifier = {
        f"{name}.{part}" for name in _names(model.pretrained_cfg, "classifier") for part in ("weight", "bias")
    }
    expected = [k for k in model.state_dict() if k not in classifier]
    missing = [k for k in expected if k not in state_dict]  # in the model's order: the first is the stem's
    known = set(expected) | classifier
    unexpected = [k for k in state_dict if k not in known]
    if not missing and not unexpected:
        return
    problems = []
    if missing:
        problems.append(f"missing key {missing[0]!r} ({len(missing)} missing)")
    if unexpected:
        problems.append(f"unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected)")
    raise ParamError(
        f"{path} does not fit model.backbone={backbone}: {', '.join(problems)}; "
        f"give the weights of timm's {backbone} (timm key names) or fix model.backbone"
    )


def describe_stem(model: nn.Module, state_dict: dict[str, torch.Tensor], in_chans: int) -> str:
    """How timm's load_pretrained turns the file's first convolution into ours (adapt_input_conv)."""
    parts = []
    for name in _names(model.pretrained_cfg, "first_conv"):
        weight = state_dict.get(f"{name}.weight")
        if weight is None:
            continue
        file_chans = int(weight.shape[1])
        if weight.ndim != 4 or file_chans == in_chans:
            parts.append(f"{name}: {file_chans} channels, loaded unchanged")
        elif in_chans == 1:
            parts.append(f"{name}: {file_chans}->1 channels, timm adapt_input_conv (filters summed)")
        else:
            parts.append(
                f"{name}: {file_chans}->{in_chans} channels, timm adapt_input_conv "
                f"(filters repeated over the channels, scaled by {file_chans}/{in_chans})"
            )
    return "; ".join(parts) or "no first convolution in the file"


def build_model(params: ModelParams, in_chans: int) -> tuple[nn.Module, WeightsProvenance]:
    """timm.create_model with the project's head and channels, then the (optional) pretrained weights.

    The weights are read here rather than by ``timm.create_model(pretrained=True)``: timm loads with
    ``strict=False`` once it drops the 1000-class head, so a file of another network would silently
    leave the model random. timm's ``load_pretrained`` still adapts the stem and drops the head.
    """
    model = timm.create_model(params.backbone, in_chans=in_chans, num_classes=NUM_CLASSES, drop_rate=params.drop_rate)
    if not params.pretrained:
        return model, WeightsProvenance(WEIGHTS_NONE, "", "", f"random init, {in_chans} channels")
    source, path = locate_weights(params)
    state_dict = read_weights(path)
    check_weights_fit(model, state_dict, path, params.backbone)
    stem = describe_stem(model, state_dict, in_chans)
    try:
        timm.models.load_pretrained(
            model,
            pretrained_cfg={**model.pretrained_cfg, "state_dict": state_dict},
            num_classes=NUM_CLASSES,
            in_chans=in_chans,
        )
    except (RuntimeError, ValueError) as exc:  # shapes that do not fit, unadaptable stems
        raise ParamError(
            f"could not load {path} into model.backbone={params.backbone}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    return model, WeightsProvenance(source, str(path), file_sha256(path), stem)


def create_model(params: ModelParams, in_chans: int) -> nn.Module:
    """The model of ``build_model`` without its provenance."""
    return build_model(params, in_chans)[0]


def resize_input(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Resize a batch of 64 px patches to dim x dim on the fly (never stored at that size)."""
    if x.shape[-1] == dim and x.shape[-2] == dim:
        return x
    return F.interpolate(x, size=(dim, dim), mode="bilinear", align_corners=False)


def embed(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooled penultimate features (what timm calls pre-logits) and the FC head's logits."""
    features = model.forward_head(model.forward_features(x), pre_logits=True)
    return features, model.get_classifier()(features)
