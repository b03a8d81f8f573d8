"""The backbone: a timm model with `in_chans` input channels and a 2-class head.

Pretrained ImageNet weights come only from places that need no network: a local file
(``model.checkpoint``), the Hugging Face hub cache or the torch hub cache. The file must hold the
backbone's tensors under timm's key names (the common wrappers are taken off first: a Lightning-style
``{"state_dict": ...}`` and a ``model.``, ``backbone.`` or ``encoder.`` prefix that every key has, each
stripping logged); timm adapts the first convolution to 12/20/28 channels
and the 1000-class head is replaced. When no source has the weights the stage stops at once with a
message naming the options, instead of retrying a download. ``WeightsProvenance`` records the
source, the file's sha256 and the stem adaptation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# Set before timm (and huggingface_hub) are imported: the hub client then never goes online,
# so missing weights fail in milliseconds. A user who wants downloads can export HF_HUB_OFFLINE=0.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import timm  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from landslide_dvc.core.band_identity import POLARISATIONS, RGB, S1_VV_VH  # noqa: E402
from landslide_dvc.core.errors import ParamError  # noqa: E402
from landslide_dvc.core.io import file_sha256  # noqa: E402
from landslide_dvc.core.params import params_section, require  # noqa: E402
from landslide_dvc.core.stem import (  # noqa: E402
    StemFile,
    bands_label,
    bands_problem,
    check_stem_shape,
    map_stem,
    resolve_bands,
    stem_record,
)

NUM_CLASSES = 2
WRAPPER_PREFIXES = ("model.", "backbone.", "encoder.")  # training frameworks' module names (Lightning, SSL repos)
LOG = logging.getLogger(__name__)


@params_section
class ModelParams:
    """`model:` section."""

    backbone: str  # any timm model name, e.g. tf_efficientnetv2_l (the paper), mobilenetv3_small_100
    pretrained: bool  # ImageNet weights from the hub cache or `checkpoint`
    checkpoint: str | None  # local weights file (.safetensors/.pth) used when pretrained is true
    dim: int  # input size: 64 px patches are resized to dim x dim on the fly (paper: 256)
    drop_rate: float  # dropout before the classifier
    # the bands the checkpoint's stem was trained on: rgb (ImageNet, adapted by timm), s2_l1c_13, s1_vv_vh
    # (SSL4EO-S12, mapped band by band) or an explicit list of band names in the file's order
    checkpoint_bands: Literal["rgb", "s2_l1c_13", "s1_vv_vh"] | list[str] = RGB
    checkpoint_s1: str | None = None  # a second file (SSL4EO-S12 Sentinel-1, VV/VH) whose stem filters the SAR channels take

    def validate(self) -> None:
        problem = bands_problem(self.checkpoint_bands)
        require(problem is None, f"model.checkpoint_bands={self.checkpoint_bands!r}: {problem}")
        if self.pretrained and self.checkpoint_bands != RGB:
            require(
                bool(self.checkpoint),
                f"model.checkpoint_bands={bands_label(self.checkpoint_bands)} needs model.checkpoint: the local file "
                "of those weights (the hub caches hold ImageNet RGB weights only)",
            )
        if self.pretrained and self.checkpoint_s1:
            require(
                self.checkpoint_bands != RGB
                and not set(resolve_bands(self.checkpoint_bands)) & set(POLARISATIONS),
                f"model.checkpoint_s1 needs model.checkpoint_bands to name Sentinel-2 bands (e.g. s2_l1c_13), not "
                f"{bands_label(self.checkpoint_bands)}: the SAR filters come from the second file",
            )
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
    # Only when the stem was mapped band by band (empty otherwise, so the other runs' records keep their bytes):
    bands: str = ""  # the checkpoint's bands (checkpoint_bands)
    stem_map: str = ""  # channel=source per input channel (core.stem)
    s1_file: str = ""  # the Sentinel-1 file whose filters the SAR channels took
    s1_sha256: str = ""

    def as_meta(self) -> dict[str, str]:
        meta = {
            "weights_source": self.source,
            "weights_file": self.file,
            "weights_sha256": self.sha256,
            "weights_stem": self.stem,
        }
        extra = {"weights_bands": self.bands, "weights_stem_map": self.stem_map,
                 "weights_s1_file": self.s1_file, "weights_s1_sha256": self.s1_sha256}
        return {**meta, **{k: v for k, v in extra.items() if v}}


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
    state_dict = unwrap_state_dict(state_dict, path)
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ParamError(f"{path} does not hold a state dict of tensors; give a .safetensors or a weights-only .pth")
    return state_dict


def unwrap_state_dict(state_dict: object, path: Path) -> object:
    """The network's tensors out of the common wrappers: a ``state_dict`` entry (Lightning), then a
    ``model.``/``backbone.``/``encoder.`` prefix as long as every key has it; each stripping is logged."""
    if isinstance(state_dict, dict) and isinstance(state_dict.get("state_dict"), dict):
        state_dict = state_dict["state_dict"]
        LOG.warning("%s: the weights were read from its 'state_dict' entry", path)
    if not isinstance(state_dict, dict):
        return state_dict
    while state_dict and (prefix := next((p for p in WRAPPER_PREFIXES if all(str(k).startswith(p) for k in state_dict)), None)):
        state_dict = {k[len(prefix):]: v for k, v in state_dict.items()}
        LOG.warning("%s: the prefix %r, which every key had, was stripped from the key names", path, prefix)
    return state_dict


def first_conv_key(model: nn.Module) -> str:
    """The state-dict key of the stem's weight (timm's pretrained_cfg first_conv), e.g. conv1.weight."""
    names = _names(model.pretrained_cfg, "first_conv")
    if not names:
        raise ParamError(f"timm does not name the first convolution of {type(model).__name__}; it cannot be mapped by band")
    return f"{names[0]}.weight"


def file_stem_shape(model: nn.Module, n_bands: int) -> tuple[int, ...]:
    """The shape a file's stem has for this network when it was trained on ``n_bands`` bands."""
    shape = tuple(model.state_dict()[first_conv_key(model)].shape)
    return (shape[0], n_bands, *shape[2:])


def check_weights_fit(model: nn.Module, state_dict: dict[str, torch.Tensor], path: Path, backbone: str,
                      n_bands: int = 3) -> None:
    """The file must hold exactly the backbone's tensors (the classifier may differ: it is replaced).

    The message names the stem shape such a file has (``n_bands`` input bands), to tell a file of
    another network from one of another sensor.
    """
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
    try:
        stem = f", stem {first_conv_key(model)} of shape {file_stem_shape(model, n_bands)}"
    except ParamError:
        stem = ""
    raise ParamError(
        f"{path} does not fit model.backbone={backbone}: {', '.join(problems)}; "
        f"give the weights of timm's {backbone} (timm key names{stem}) or fix model.backbone"
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


def read_stem_file(model: nn.Module, path: Path, bands: tuple[str, ...], param: str, bands_text: str,
                   backbone: str) -> tuple[dict[str, torch.Tensor], StemFile]:
    """A multispectral file's state dict and stem, checked: the network's keys, one stem filter per band."""
    state_dict = read_weights(path)
    check_weights_fit(model, state_dict, path, backbone, n_bands=len(bands))
    key = first_conv_key(model)
    weight = check_stem_shape(state_dict.get(key), key, path, file_stem_shape(model, len(bands)), param, bands_text)
    return state_dict, StemFile(weight, bands, "s1" if param.endswith("_s1") else "")


def map_model_stem(model: nn.Module, params: ModelParams, path: Path, channels: Sequence[str]
                   ) -> tuple[dict[str, torch.Tensor], WeightsProvenance]:
    """The file's state dict with its stem replaced by the band-by-band mapping onto ``channels``."""
    bands = resolve_bands(params.checkpoint_bands)
    state_dict, main = read_stem_file(
        model, path, bands, "model.checkpoint", f"model.checkpoint_bands={bands_label(params.checkpoint_bands)}",
        params.backbone,
    )
    files = [main]
    s1_path = Path(params.checkpoint_s1) if params.checkpoint_s1 else None
    if s1_path is not None:
        if not s1_path.is_file():
            raise ParamError(f"model.checkpoint_s1={s1_path} does not exist; give the Sentinel-1 weights file or set it to null")
        files.append(read_stem_file(model, s1_path, S1_VV_VH, "model.checkpoint_s1", "s1_vv_vh", params.backbone)[1])
    stem, record = map_stem(channels, files)
    key = first_conv_key(model)
    label = bands_label(params.checkpoint_bands) + (" + s1_vv_vh" if s1_path else "")
    matched = sum(not entry.endswith("=zeros") for entry in record)
    provenance = WeightsProvenance(
        "model.checkpoint", str(path), file_sha256(path),
        f"{key.rsplit('.', 1)[0]}: {len(bands)} bands -> {len(channels)} channels mapped by band "
        f"({matched} from the files, {len(channels) - matched} zeros)",
        bands=label, stem_map=stem_record(record),
        s1_file=str(s1_path) if s1_path else "", s1_sha256=file_sha256(s1_path) if s1_path else "",
    )
    return {**state_dict, key: stem}, provenance


def build_model(params: ModelParams, in_chans: int, channels: Sequence[str] | None = None
                ) -> tuple[nn.Module, WeightsProvenance]:
    """timm.create_model with the project's head and channels, then the (optional) pretrained weights.

    The weights are read here rather than by ``timm.create_model(pretrained=True)``: timm loads with
    ``strict=False`` once it drops the 1000-class head, so a file of another network would silently
    leave the model random. timm's ``load_pretrained`` still adapts the stem (``rgb``) and drops the
    head. With multispectral weights (``model.checkpoint_bands``) the stem is mapped onto
    ``channels`` (the input channel names) before timm loads the file.
    """
    model = timm.create_model(params.backbone, in_chans=in_chans, num_classes=NUM_CLASSES, drop_rate=params.drop_rate)
    if not params.pretrained:
        return model, WeightsProvenance(WEIGHTS_NONE, "", "", f"random init, {in_chans} channels")
    source, path = locate_weights(params)
    if params.checkpoint_bands == RGB:
        state_dict = read_weights(path)
        check_weights_fit(model, state_dict, path, params.backbone)
        stem = describe_stem(model, state_dict, in_chans)
        provenance = WeightsProvenance(source, str(path), file_sha256(path), stem)
        pretrained_cfg = {**model.pretrained_cfg, "state_dict": state_dict}
    else:
        if channels is None or len(channels) != in_chans:
            raise ValueError(f"mapping the stem by band needs the {in_chans} input channel names")
        state_dict, provenance = map_model_stem(model, params, path, channels)
        # The stem already has our channels: the declared input size says so, and timm loads it unchanged.
        input_size = (in_chans, *(model.pretrained_cfg.get("input_size") or (3, 224, 224))[1:])
        pretrained_cfg = {**model.pretrained_cfg, "state_dict": state_dict, "input_size": input_size}
    try:
        timm.models.load_pretrained(
            model,
            pretrained_cfg=pretrained_cfg,
            num_classes=NUM_CLASSES,
            in_chans=in_chans,
        )
    except (RuntimeError, ValueError) as exc:  # shapes that do not fit, unadaptable stems
        raise ParamError(
            f"could not load {path} into model.backbone={params.backbone}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    return model, provenance


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
