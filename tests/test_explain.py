"""Band occlusion on a toy model whose important band is known."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from landslide_dvc.pipeline.explain import band_occlusion


class OneBandModel(nn.Module):
    """P(landslide) = sigmoid(4 * mean of band 2); every other band is ignored."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def get_classifier(self) -> nn.Module:
        weight = torch.zeros(2, 5)
        weight[1, 2] = 4.0
        layer = nn.Linear(5, 2, bias=False)
        layer.weight.data = weight
        return layer


def test_occlusion_finds_the_only_informative_band() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(1.0, 0.1, size=(6, 5, 8, 8)).astype(np.float32)
    base, drops = band_occlusion(OneBandModel(), images, dim=8, device=torch.device("cpu"), batch_size=4)
    expected_base = 1 / (1 + np.exp(-4 * images[:, 2].mean(axis=(1, 2))))
    np.testing.assert_allclose(base, expected_base, rtol=1e-5)
    np.testing.assert_allclose(drops[:, [0, 1, 3, 4]], 0.0, atol=1e-7)
    np.testing.assert_allclose(drops[:, 2], expected_base - 0.5, rtol=1e-5)  # zeroed band -> logit 0
