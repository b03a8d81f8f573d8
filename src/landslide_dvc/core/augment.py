"""Online augmentation, batched on the training device (paper Section 3, "bag of freebies").

Colour: Gaussian noise, per-band brightness/contrast jitter, saturation of the optical RGB bands.
Geometric: one random affine per image (flip, rotation, shear, shift) applied with a single
``grid_sample`` call for the whole batch. MixUp/CutMix: timm's ``Mixup`` (soft targets), trained
with timm's ``SoftTargetCrossEntropy``, the soft-label loss of the paper.
Inputs are normalised images (B, C, H, W); every random draw uses torch's global generator,
which the training loop reseeds per epoch (deterministic and resumable).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.data import Mixup
from timm.data.mixup import mixup_target

from landslide_dvc.core.bands import rgb_names
from landslide_dvc.core.params import params_section, require


@params_section
class AugmentParams:
    """`augment:` section (Table 2: Mixup and CutMix columns; colour/geometric always on in the paper)."""

    color: bool
    noise_std: float  # Gaussian noise, in normalised units
    brightness: float  # per-band additive shift ~ U(-b, b)
    contrast: float  # per-band factor ~ U(1 - c, 1 + c) around the band's mean
    saturation: float  # RGB saturation factor ~ U(1 - s, 1 + s) on the optical bands
    geometric: bool
    flip: bool  # random horizontal and vertical flips
    rotate: float  # rotation ~ U(-r, r) degrees
    shear: float  # shear ~ U(-s, s) degrees
    shift: float  # translation ~ U(-t, t) as a fraction of the patch size
    mixup: bool
    mixup_alpha: float
    cutmix: bool
    cutmix_alpha: float
    mix_prob: float  # probability that a batch is mixed at all
    switch_prob: float  # with both on: probability of CutMix instead of MixUp
    label_smoothing: float

    def validate(self) -> None:
        for name in ("noise_std", "brightness", "contrast", "saturation", "rotate", "shear", "shift"):
            require(getattr(self, name) >= 0, f"augment.{name}={getattr(self, name)} must be >= 0")
        require(self.contrast < 1 and self.saturation <= 1, "augment.contrast must be < 1 and augment.saturation <= 1")
        require(self.shift < 1, f"augment.shift={self.shift} must be < 1 (a fraction of the patch)")
        require(self.shear < 90, f"augment.shear={self.shear} must be < 90 degrees")
        require(not self.mixup or self.mixup_alpha > 0, f"augment.mixup_alpha={self.mixup_alpha} must be > 0")
        require(not self.cutmix or self.cutmix_alpha > 0, f"augment.cutmix_alpha={self.cutmix_alpha} must be > 0")
        for name in ("mix_prob", "switch_prob"):
            require(0 <= getattr(self, name) <= 1, f"augment.{name}={getattr(self, name)} must be in [0, 1]")
        require(0 <= self.label_smoothing < 0.5, f"augment.label_smoothing={self.label_smoothing} must be in [0, 0.5)")


def _uniform(low: float, high: float, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    return torch.rand(shape, device=like.device, dtype=like.dtype) * (high - low) + low


class NoiseBank:
    """Gaussian noise for whole batches at a fraction of the cost of drawing it per pixel.

    torch's CPU normal sampler costs more than the rest of the augmentation together, so a bank
    of ``size`` noise images, ``margin`` pixels larger than the batch images, is drawn once (per
    epoch, and again every ``refresh`` batches). Each image takes a random entry with a random
    sign, cropped at a random offset shared by the batch: still N(0, 1) per pixel, with about
    size x 2 x margin^2 distinct patterns per bank.
    """

    def __init__(self, size: int = 64, refresh: int = 64, margin: int = 8) -> None:
        self.size, self.refresh, self.margin = size, refresh, margin
        self.bank: torch.Tensor | None = None
        self.calls = 0

    def reset(self) -> None:
        """Forget the bank; the next call draws a new one from the (reseeded) global generator."""
        self.bank, self.calls = None, 0

    def sample(self, like: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """Noise shaped like ``like``, times ``scale``, drawn from the bank."""
        b, c, h, w = like.shape
        shape = (self.size, c, h + self.margin, w + self.margin)
        if (
            self.bank is None
            or tuple(self.bank.shape) != shape
            or self.bank.device != like.device
            or (self.calls and self.calls % self.refresh == 0)
        ):
            self.bank = torch.randn(shape, device=like.device, dtype=like.dtype)
        self.calls += 1
        index = torch.randint(self.size, (b,), device=like.device)
        sign = torch.randint(0, 2, (b, 1, 1, 1), device=like.device, dtype=like.dtype).mul_(2 * scale).sub_(scale)
        dy, dx = (int(v) for v in torch.randint(0, self.margin + 1, (2,)))
        return self.bank[index, :, dy : dy + h, dx : dx + w].mul_(sign)


def color_jitter(
    x: torch.Tensor, params: AugmentParams, rgb: tuple[int, int, int] | None, noise: NoiseBank | None = None
) -> torch.Tensor:
    """Noise, per-band brightness/contrast and RGB saturation; returns a new tensor."""
    b, c = x.shape[:2]
    mean = x.mean(dim=(2, 3), keepdim=True)
    contrast = _uniform(1 - params.contrast, 1 + params.contrast, (b, c, 1, 1), x)
    brightness = _uniform(-params.brightness, params.brightness, (b, c, 1, 1), x)
    # (x - mean) * contrast + mean + brightness (+ noise): two passes over the batch
    bias = mean * (1 - contrast) + brightness
    if params.noise_std > 0:
        noise_term = noise.sample(x, params.noise_std) if noise is not None else torch.randn_like(x).mul_(params.noise_std)
        out = noise_term.add_(bias).addcmul_(x, contrast)
    else:
        out = torch.addcmul(bias, x, contrast)
    if rgb is not None and params.saturation > 0:
        index = list(rgb)
        contiguous = index == list(range(index[0], index[0] + 3))
        colour = out[:, index[0] : index[0] + 3] if contiguous else out[:, index]  # a view when possible
        grey = colour.mean(dim=1, keepdim=True)
        factor = _uniform(1 - params.saturation, 1 + params.saturation, (b, 1, 1, 1), x)
        saturated = colour.mul_(factor).add_(grey * (1 - factor))
        if not contiguous:
            out[:, index] = saturated
    return out


def random_affine_matrices(batch: int, params: AugmentParams, device: torch.device) -> torch.Tensor:
    """(B, 2, 3) affine matrices in normalised coordinates: flip, rotate, shear, shift."""

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(batch, device=device) * 2 - 1) * limit

    angle = uniform(math.radians(params.rotate))
    shear = uniform(math.radians(params.shear))
    tx, ty = uniform(2 * params.shift), uniform(2 * params.shift)  # [-1, 1] spans the image: 2 x fraction
    if params.flip:
        fx = torch.where(torch.rand(batch, device=device) < 0.5, -1.0, 1.0)
        fy = torch.where(torch.rand(batch, device=device) < 0.5, -1.0, 1.0)
    else:
        fx = fy = torch.ones(batch, device=device)
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    # rotation @ shear(x) @ flip
    a00, a01 = cos, cos * tan - sin
    a10, a11 = sin, sin * tan + cos
    theta = torch.stack(
        [torch.stack([a00 * fx, a01 * fy, tx], dim=1), torch.stack([a10 * fx, a11 * fy, ty], dim=1)], dim=1
    )
    return theta


def geometric(x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """One random affine warp per image, all in a single grid_sample (reflection padding).

    Nearest-neighbour sampling keeps every output pixel an input pixel: bilinear interpolation
    would average neighbouring speckle and shrink the SAR bands' variance in training images
    only (and costs 3x more).
    """
    theta = random_affine_matrices(x.shape[0], params, x.device).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="reflection", align_corners=False)


def make_mixup(params: AugmentParams, num_classes: int = 2) -> Mixup | None:
    """timm's Mixup/CutMix (batch mode) or None when both are off."""
    if not (params.mixup or params.cutmix):
        return None
    return Mixup(
        mixup_alpha=params.mixup_alpha if params.mixup else 0.0,
        cutmix_alpha=params.cutmix_alpha if params.cutmix else 0.0,
        prob=params.mix_prob,
        switch_prob=params.switch_prob if (params.mixup and params.cutmix) else 0.0,
        mode="batch",
        label_smoothing=params.label_smoothing,
        num_classes=num_classes,
    )


def soft_targets(labels: torch.Tensor, smoothing: float, num_classes: int = 2) -> torch.Tensor:
    """One-hot (optionally smoothed) targets, the no-mixing counterpart of Mixup's output."""
    return mixup_target(labels.long(), num_classes, lam=1.0, smoothing=smoothing)


class BatchAugment:
    """Everything the training step applies to a batch: returns (images, soft targets)."""

    def __init__(self, params: AugmentParams, channels: list[str]) -> None:
        self.params = params
        rgb = rgb_names(channels)  # Zindi: Red, Green, Blue; Landslide4Sense: B4, B3, B2
        self.rgb = tuple(channels.index(name) for name in rgb) if rgb else None  # type: ignore[assignment]
        self.mixup = make_mixup(params)
        self.noise = NoiseBank()

    def start_epoch(self) -> None:
        """Call after reseeding: makes the epoch's draws independent of earlier epochs (resumable)."""
        self.noise.reset()

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.params.color:
            x = color_jitter(x, self.params, self.rgb, self.noise)
        if self.params.geometric:
            x = geometric(x, self.params)
        if self.mixup is not None:
            # timm mixes in place and needs an even batch; the loader only yields even batches.
            return self.mixup(x.contiguous(), labels)
        return x, soft_targets(labels, self.params.label_smoothing)
