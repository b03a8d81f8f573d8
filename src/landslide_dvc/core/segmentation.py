"""The Landslide4Sense segmentation baseline: a U-Net on the pixel masks, scored as the L4S paper scores it.

The model is segmentation-models-pytorch's U-Net (``seg.encoder``: any smp encoder, timm's as
``tu-<name>``), built with ``encoder_weights=None``: nothing is downloaded. It trains from scratch,
or its encoder starts from a local file (``seg.checkpoint``): ImageNet RGB weights adapted by timm
(``seg.checkpoint_bands: rgb``), or multispectral ones (SSL4EO-S12 Sentinel-2) whose stem is mapped
band by band onto the channels (``landslide_dvc.core.stem``; Landslide4Sense B1..B12 take the
file's B1..B12, slope, DEM and the differences start at zero).
The loss suits a class that covers a few percent of the pixels: Dice (insensitive to the
imbalance) plus BCE with a positive-class weight, or focal loss. The score is the landslide class's
pixel precision, recall and F1 over all pixels of the validation split together (one confusion
matrix, not a mean of per-image scores), at probability ``seg.threshold``.

Validation is the split normalize wrote as test.h5 (``l4s.test_split``) when it has masks;
without masks (the first release's ValidData) it is training fold ``seg.val_fold``, held out.

Training runs in the one training loop (``landslide_dvc.core.loop``), as the fold classifiers do:
reseeded every epoch, resumable from the last completed epoch, bf16 autocast and channels-last on
CUDA, data-parallel under torchrun with ``seg.nproc`` > 1. The last epoch's weights are kept (the
validation split is the one the scores are reported on, so it does not pick the epoch).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before smp imports timm / the hub client

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from landslide_dvc.core.band_identity import RGB  # noqa: E402
from landslide_dvc.core.devices import autocast, prepare_model, select_device, to_memory_format  # noqa: E402
from landslide_dvc.core.distributed import SINGLE, Ranks  # noqa: E402
from landslide_dvc.core.errors import ParamError  # noqa: E402
from landslide_dvc.core.io import file_sha256  # noqa: E402
from landslide_dvc.core.loop import LoopSettings, make_scheduler, rank_share, run_epochs  # noqa: E402
from landslide_dvc.core.metrics import precision_recall_f1  # noqa: E402
from landslide_dvc.core.model import WeightsProvenance, read_weights  # noqa: E402
from landslide_dvc.core.params import params_section, require  # noqa: E402
from landslide_dvc.core.resume import ResumeState  # noqa: E402
from landslide_dvc.core.runtime import seed_everything, use_threads  # noqa: E402
from landslide_dvc.core.stem import (  # noqa: E402
    StemFile,
    bands_label,
    bands_problem,
    check_stem_shape,
    map_stem,
    resolve_bands,
    stem_record,
)

SegLoss = Literal["dice_bce", "dice_focal", "focal"]


@params_section
class SegParams:
    """`seg:` section."""

    encoder: str  # smp encoder name; tu-<timm name> for timm's (e.g. tu-tf_efficientnetv2_s)
    encoder_depth: int  # downsampling stages (3-5); 128 px patches are 8 px at depth 4
    decoder_channels: list[int]  # one per encoder stage, deepest first
    loss: SegLoss  # dice_bce: Dice + weighted BCE; dice_focal: Dice + focal; focal: focal alone
    pos_weight: float  # BCE weight of landslide pixels (dice_bce)
    epochs: int
    batch_size: int
    lr: float  # Adam
    weight_decay: float
    flips: bool  # random flips and 90-degree rotations of image and mask together
    threshold: float  # landslide where the predicted probability >= threshold
    val_fold: int  # held-out training fold when the test split has no masks
    n_examples: int  # validation patches shown in the examples figure
    eval_batch_size: int
    seed: int
    device: str  # auto, cpu, cuda or cuda:auto (as train.device)
    resume: bool = True  # continue a killed run from its last completed epoch
    nproc: int = 1  # data-parallel processes (torchrun); each trains on its share of every batch
    threads: int = 2  # CPU intra-op threads, split between the nproc processes (results depend on it); 0: cores / nproc
    checkpoint: str | None = None  # local weights file (.safetensors/.pth) for the encoder; null: from scratch
    # the bands the checkpoint's stem was trained on: rgb (ImageNet, adapted by timm), s2_l1c_13 (SSL4EO-S12,
    # mapped band by band), s1_vv_vh or an explicit list of band names in the file's order
    checkpoint_bands: Literal["rgb", "s2_l1c_13", "s1_vv_vh"] | list[str] = RGB

    def validate(self) -> None:
        problem = bands_problem(self.checkpoint_bands)
        require(problem is None, f"seg.checkpoint_bands={self.checkpoint_bands!r}: {problem}")
        require(
            self.checkpoint_bands == RGB or bool(self.checkpoint),
            f"seg.checkpoint_bands={bands_label(self.checkpoint_bands)} needs seg.checkpoint: the local file of those weights",
        )
        require(self.threads >= 0, f"seg.threads={self.threads} must be >= 0 (0: share the cores)")
        require(self.nproc >= 1, f"seg.nproc={self.nproc} must be >= 1")
        require(3 <= self.encoder_depth <= 5, f"seg.encoder_depth={self.encoder_depth} must be in [3, 5]")
        require(
            len(self.decoder_channels) == self.encoder_depth and all(c >= 1 for c in self.decoder_channels),
            f"seg.decoder_channels={self.decoder_channels} needs {self.encoder_depth} positive sizes "
            f"(one per seg.encoder_depth stage)",
        )
        require(self.pos_weight > 0, f"seg.pos_weight={self.pos_weight} must be > 0")
        require(self.epochs >= 1, f"seg.epochs={self.epochs} must be >= 1")
        require(self.batch_size >= 1, f"seg.batch_size={self.batch_size} must be >= 1")
        require(self.eval_batch_size >= 1, f"seg.eval_batch_size={self.eval_batch_size} must be >= 1")
        require(self.lr > 0, f"seg.lr={self.lr} must be > 0")
        require(self.weight_decay >= 0, f"seg.weight_decay={self.weight_decay} must be >= 0")
        require(0.0 < self.threshold < 1.0, f"seg.threshold={self.threshold} must be in (0, 1)")
        require(self.val_fold >= 0, f"seg.val_fold={self.val_fold} must be >= 0")
        require(self.n_examples >= 1, f"seg.n_examples={self.n_examples} must be >= 1")


def build_unet(params: SegParams, in_chans: int) -> nn.Module:
    """smp.Unet with one output (landslide logit), random initial weights."""
    import segmentation_models_pytorch as smp

    try:
        return smp.Unet(
            encoder_name=params.encoder, encoder_weights=None, encoder_depth=params.encoder_depth,
            decoder_channels=tuple(params.decoder_channels), in_channels=in_chans, classes=1,
        )
    except (KeyError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ParamError(
            f"seg.encoder={params.encoder} with encoder_depth={params.encoder_depth} cannot build a U-Net ({reason}); "
            f"pick an smp encoder (e.g. resnet34) or a timm one as tu-<name>"
        ) from None


def _encoder_module(model: nn.Module) -> nn.Module:
    """The module whose state dict holds the encoder's tensors under the backbone's own key names.

    smp's ``tu-`` encoders wrap timm's features-only network in ``.model``; smp's own ResNet encoders
    are torchvision's ResNet, whose key names are timm's for the ResNet family.
    """
    encoder = model.encoder
    return getattr(encoder, "model", encoder)


def _stem_key(module: nn.Module) -> str:
    """The key of the first convolution's weight: the stem, which sees the input channels."""
    name = next(name for name, sub in module.named_modules() if isinstance(sub, nn.Conv2d))
    return f"{name}.weight"


def load_encoder_weights(model: nn.Module, params: SegParams, channels: Sequence[str]) -> WeightsProvenance | None:
    """Load ``seg.checkpoint`` into the U-Net's encoder, its stem adapted (rgb) or mapped by band; None without one.

    Every encoder tensor must be in the file with its shape (BatchNorm's batch counters excepted);
    tensors the encoder has not (a classifier, or stages beyond ``seg.encoder_depth``) are left out.
    """
    if not params.checkpoint:
        return None
    path = Path(params.checkpoint)
    if not path.is_file():
        raise ParamError(f"seg.checkpoint={path} does not exist; give a local weights file or set it to null")
    state_dict = read_weights(path)
    module = _encoder_module(model)
    own = module.state_dict()
    key = _stem_key(module)
    bands = None if params.checkpoint_bands == RGB else resolve_bands(params.checkpoint_bands)
    file_stem = (own[key].shape[0], len(bands) if bands else 3, *own[key].shape[2:])
    required = [k for k in own if not k.endswith("num_batches_tracked")]
    missing = [k for k in required if k not in state_dict]
    misshapen = [k for k in required if k != key and k in state_dict and state_dict[k].shape != own[k].shape]
    if missing or misshapen:
        problem = (f"missing key {missing[0]!r} ({len(missing)} missing)" if missing
                   else f"{misshapen[0]!r} has shape {tuple(state_dict[misshapen[0]].shape)}, not {tuple(own[misshapen[0]].shape)}")
        raise ParamError(
            f"seg.checkpoint={path} does not fit seg.encoder={params.encoder}: {problem}; give the weights of the "
            f"encoder's network (timm key names, stem {key} of shape {file_stem}) or fix seg.encoder"
        )
    stem_name, in_chans = key.rsplit(".", 1)[0], int(own[key].shape[1])
    bands_text = f"seg.checkpoint_bands={bands_label(params.checkpoint_bands)}"
    weight = check_stem_shape(state_dict[key], key, path, file_stem, "seg.checkpoint", bands_text)
    if bands is None:
        from timm.models import adapt_input_conv

        stem = adapt_input_conv(in_chans, weight)
        extra: dict[str, str] = {}
        how = f"{stem_name}: 3->{in_chans} channels, timm adapt_input_conv"
    else:
        stem, record = map_stem(channels, [StemFile(weight, bands)])
        matched = sum(not entry.endswith("=zeros") for entry in record)
        extra = {"bands": bands_label(params.checkpoint_bands), "stem_map": stem_record(record)}
        how = (f"{stem_name}: {len(bands)} bands -> {in_chans} channels mapped by band "
               f"({matched} from the file, {in_chans - matched} zeros)")
    loaded = {k: state_dict[k] if k in state_dict else own[k] for k in own}
    loaded[key] = stem.to(own[key].dtype)
    module.load_state_dict(loaded, strict=True)
    return WeightsProvenance("seg.checkpoint", str(path), file_sha256(path), how, **extra)


def make_loss(params: SegParams) -> nn.Module:
    """The per-pixel loss on logits (B, 1, H, W) and masks (B, 1, H, W) float."""
    from segmentation_models_pytorch import losses

    dice = losses.DiceLoss(mode="binary", from_logits=True)
    focal = losses.FocalLoss(mode="binary")
    bce = losses.SoftBCEWithLogitsLoss(pos_weight=torch.tensor(params.pos_weight))

    class Combined(nn.Module):
        def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            if params.loss == "focal":
                return focal(logits, target)
            other = bce if params.loss == "dice_bce" else focal
            return dice(logits, target) + other(logits, target)

    return Combined()


def pixel_scores(predicted: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """Landslide-class pixel precision, recall, F1 and IoU over all pixels together (0 when undefined)."""
    from sklearn.metrics import jaccard_score

    labels, predictions = np.ravel(target).astype(np.int8), np.ravel(predicted).astype(np.int8)
    precision, recall, f1 = precision_recall_f1(labels, predictions)
    iou = float(jaccard_score(labels, predictions, labels=[0, 1], pos_label=1, zero_division=0))
    return {"pixel_precision": precision, "pixel_recall": recall, "pixel_f1": f1, "pixel_iou": iou}


def random_dihedral(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random flip / 90-degree rotation for a batch's images and masks (torch's seeded generator)."""
    k = int(torch.randint(4, (1,)))
    flip = bool(torch.randint(2, (1,)))
    x, y = torch.rot90(x, k, dims=(2, 3)), torch.rot90(y, k, dims=(2, 3))
    if flip:
        x, y = torch.flip(x, dims=(3,)), torch.flip(y, dims=(3,))
    return x, y


@torch.no_grad()
def predict_probabilities(model: nn.Module, images: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """P(landslide) per pixel (N, H, W) float32."""
    model.eval()
    out = np.empty((len(images), *images.shape[-2:]), np.float32)
    for start in range(0, len(images), batch_size):
        x = to_memory_format(torch.from_numpy(images[start : start + batch_size]).to(device), device)
        with autocast(device):
            logits = model(x)
        out[start : start + len(x)] = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
    return out


@dataclass
class SegData:
    """Training and validation arrays, and where the validation split came from."""

    train_images: np.ndarray  # (N, C, H, W) float32
    train_masks: np.ndarray  # (N, H, W) uint8
    val_images: np.ndarray
    val_masks: np.ndarray
    val_ids: list[str]
    channels: list[str]
    validation: str  # e.g. "ValidData" or "TrainData fold 0"


@dataclass
class SegResult:
    """What training the U-Net produced: the kept (last) epoch's weights and validation probabilities."""

    state_dict: dict[str, torch.Tensor]
    val_prob: np.ndarray  # (N, H, W) float32
    history: list[dict[str, float]]
    weights: WeightsProvenance | None = None  # the encoder's initial weights (None: from scratch)


class SegStep:
    """One optimisation step: joint flips of images and masks, forward (bf16 on CUDA), pixel loss, Adam."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, flips: bool,
                 device: torch.device) -> None:
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.flips, self.device = flips, device

    def __call__(self, images: torch.Tensor, masks: torch.Tensor) -> float:
        x = images.to(self.device, non_blocking=True)
        y = masks.to(self.device, non_blocking=True)
        if self.flips:
            x, y = random_dihedral(x, y)
        with autocast(self.device):
            logits = self.model(to_memory_format(x, self.device))
        loss = self.loss_fn(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def train_unet(
    data: SegData,
    params: SegParams,
    *,
    resume: ResumeState | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: bool = True,
    ranks: Ranks = SINGLE,
) -> SegResult:
    """Train the U-Net for ``seg.epochs`` (Adam, cosine decay to 0) and score every epoch on the validation split."""
    device = select_device(params.device, "seg.device", rank=ranks.local_rank)
    ranks.connect(device)
    use_threads(rank_share(params.threads, params.nproc))
    seed_everything(params.seed, 0, 0)  # initial weights; epoch e reseeds from (seed, 0, e)
    network = build_unet(params, in_chans=data.train_images.shape[1])
    weights = load_encoder_weights(network, params, data.channels)
    model = prepare_model(network, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, weight_decay=params.weight_decay, fused=True)
    scheduler = make_scheduler(optimizer, "cosine", params.epochs)
    step = SegStep(ranks.wrap(model, unused_parameters=True), optimizer, make_loss(params), params.flips, device)
    images = torch.from_numpy(np.ascontiguousarray(data.train_images))
    masks = torch.from_numpy(data.train_masks.astype(np.float32))[:, None]

    def validate() -> tuple[dict[str, float], float, np.ndarray]:
        if ranks.parallel:
            ranks.sync_buffers(model)  # rank 0's BatchNorm statistics: the weights rank 0 saves
        prob = predict_probabilities(model, data.val_images, params.eval_batch_size, device)
        scores = pixel_scores(prob >= params.threshold, data.val_masks)
        return scores, scores["pixel_f1"], prob

    settings = LoopSettings(epochs=params.epochs, batch_size=params.batch_size, eval_every=1, seed=params.seed,
                            resume=params.resume, keep="last", label="train_seg")
    loop = run_epochs(
        settings, model, optimizer, scheduler,
        n_train=len(images), train_module=step.model,
        step=lambda index: step(images[index], masks[index]),
        validate=validate, resume=resume, on_epoch=on_epoch, progress=progress, ranks=ranks,
    )
    assert loop.kept.state_dict is not None and loop.kept.output is not None
    return SegResult(state_dict=loop.kept.state_dict, val_prob=loop.kept.output, history=loop.history, weights=weights)


