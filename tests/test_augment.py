"""Online augmentation: shapes and dtypes kept, flips exact, MixUp/CutMix label mass 1."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from landslide_dvc.core.augment import (
    AugmentParams,
    BatchAugment,
    color_jitter,
    geometric,
    make_mixup,
    soft_targets,
)

CHANNELS = ["Red", "Green", "Blue", "NIR", "DVV", "DVH", "DDVV", "DDVH", "AVV", "AVH", "ADVV", "ADVH"]
BASE = AugmentParams(
    color=True, noise_std=0.05, brightness=0.1, contrast=0.1, saturation=0.2, geometric=True, flip=True,
    rotate=180.0, shear=10.0, shift=0.1, mixup=True, mixup_alpha=0.4, cutmix=True, cutmix_alpha=1.0,
    mix_prob=1.0, switch_prob=0.5, label_smoothing=0.0,
)


def batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    return torch.randn(n, 12, 32, 32), torch.tensor([0, 1] * (n // 2))


def test_color_and_geometric_keep_shape_and_dtype() -> None:
    x, _ = batch()
    for out in (color_jitter(x, BASE, (0, 1, 2)), geometric(x, BASE)):
        assert out.shape == x.shape and out.dtype == x.dtype and torch.isfinite(out).all()
        assert not torch.allclose(out, x)


def test_identity_and_flip_warps_are_exact() -> None:
    x, _ = batch()
    still = dataclasses.replace(BASE, flip=False, rotate=0.0, shear=0.0, shift=0.0)
    torch.testing.assert_close(geometric(x, still), x, atol=1e-5, rtol=0)
    flips = dataclasses.replace(BASE, flip=True, rotate=0.0, shear=0.0, shift=0.0)
    out = geometric(x, flips)
    for i in range(len(x)):
        candidates = [x[i], x[i].flip(-1), x[i].flip(-2), x[i].flip(-1).flip(-2)]
        assert any(torch.allclose(out[i], c, atol=1e-5) for c in candidates)


def test_saturation_touches_only_rgb() -> None:
    x, _ = batch()
    params = dataclasses.replace(BASE, noise_std=0.0, brightness=0.0, contrast=0.0, saturation=0.5)
    out = color_jitter(x, params, (0, 1, 2))
    torch.testing.assert_close(out[:, 3:], x[:, 3:])
    torch.testing.assert_close(out[:, :3].mean(1), x[:, :3].mean(1), atol=1e-5, rtol=1e-5)  # grey level kept


def test_mixup_and_cutmix_targets_sum_to_one() -> None:
    for mixup, cutmix in ((True, False), (False, True), (True, True)):
        params = dataclasses.replace(BASE, mixup=mixup, cutmix=cutmix, label_smoothing=0.1)
        np.random.seed(0)
        x, y = batch()
        out, targets = BatchAugment(params, CHANNELS)(x, y)
        assert out.shape == x.shape and targets.shape == (8, 2)
        torch.testing.assert_close(targets.sum(1), torch.ones(8))
        assert (targets > 0).all() and (targets < 1).all()


def test_cutmix_label_mass_matches_pasted_area() -> None:
    params = dataclasses.replace(BASE, color=False, geometric=False, mixup=False, cutmix=True, label_smoothing=0.0)
    np.random.seed(3)
    x = torch.zeros(2, 12, 32, 32)
    x[1] = 1.0  # image 0 receives a box from image 1 (the batch reversed)
    y = torch.tensor([0, 1])
    out, targets = make_mixup(params)(x.clone(), y)
    pasted = out[0, 0].mean().item()
    assert abs(targets[0, 1].item() - pasted) < 1e-6


def test_no_mixing_gives_one_hot_targets() -> None:
    params = dataclasses.replace(BASE, mixup=False, cutmix=False)
    assert make_mixup(params) is None
    x, y = batch()
    _, targets = BatchAugment(params, CHANNELS)(x, y)
    torch.testing.assert_close(targets, torch.nn.functional.one_hot(y, 2).float())
    smoothed = soft_targets(y, 0.2)
    torch.testing.assert_close(smoothed[1], torch.tensor([0.1, 0.9]))


def test_augmentation_is_reproducible_from_seeds() -> None:
    x, y = batch()
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        np.random.seed(7)
        outs.append(BatchAugment(BASE, CHANNELS)(x.clone(), y))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])
