"""Test-time augmentation: the views are the dihedral transforms, and their mean does not depend on order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from landslide_dvc.core.errors import ParamError
from landslide_dvc.core.inference import dihedral_views, predict, view_mean
from landslide_dvc.core.model import ModelParams, create_model


def numpy_dihedral(image: np.ndarray) -> list[np.ndarray]:
    """The 8 symmetries of a square (C, H, W), written independently with numpy."""
    rotations = [np.rot90(image, k, axes=(1, 2)) for k in range(4)]
    return rotations + [np.rot90(image[:, :, ::-1], k, axes=(1, 2)) for k in range(4)]


def as_set(views: list[np.ndarray]) -> set[bytes]:
    return {np.ascontiguousarray(v).tobytes() for v in views}


def test_views_are_exact_dihedral_transforms() -> None:
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).reshape(2, 3, 5, 5)
    group = [as_set(numpy_dihedral(x[i].numpy())) for i in range(2)]
    for n in (1, 4, 8):
        views = dihedral_views(x, n)
        assert len(views) == n and torch.equal(views[0], x)
        for i in range(2):
            found = as_set([v[i].numpy() for v in views])
            assert len(found) == n and found <= group[i]  # n distinct symmetries, nothing else
    four = [v[0].numpy() for v in dihedral_views(x, 4)]
    expected = [x[0].numpy(), x[0].numpy()[:, :, ::-1], x[0].numpy()[:, ::-1, :], np.rot90(x[0].numpy(), 2, axes=(1, 2))]
    assert all(np.array_equal(a, b) for a, b in zip(four, expected))


@pytest.mark.parametrize("n", [4, 8])
def test_the_view_sets_are_closed_so_a_flipped_patch_has_the_same_views(n: int) -> None:
    x = torch.randn(1, 2, 6, 6)
    flipped = torch.flip(x, dims=(-1,))
    assert as_set([v[0].numpy() for v in dihedral_views(x, n)]) == as_set([v[0].numpy() for v in dihedral_views(flipped, n)])


def test_view_mean_is_order_independent() -> None:
    rng = np.random.default_rng(0)
    per_view = torch.from_numpy(rng.random((8, 5, 7)).astype(np.float32))  # (views, N, D)
    mean = view_mean(per_view.reshape(40, 7), 8)
    for _ in range(5):
        shuffled = per_view[torch.from_numpy(rng.permutation(8))]
        assert torch.equal(view_mean(shuffled.reshape(40, 7), 8), mean)
    np.testing.assert_allclose(mean.numpy(), per_view.double().mean(0).numpy(), rtol=1e-6)


def test_predict_with_tta_is_invariant_to_the_symmetries_it_averages() -> None:
    torch.manual_seed(0)
    model = create_model(ModelParams("test_efficientnet", False, None, 32, 0.0), 12).eval()
    x = torch.randn(6, 12, 32, 32)
    cpu = torch.device("cpu")
    prob, feats = predict(model, x, 32, cpu, 4, with_features=True, tta=8)
    for transformed in (torch.rot90(x, 1, dims=(-2, -1)), torch.flip(x, dims=(-2,))):
        prob_t, feats_t = predict(model, transformed, 32, cpu, 4, with_features=True, tta=8)
        np.testing.assert_allclose(prob_t, prob, atol=1e-6)
        np.testing.assert_allclose(feats_t, feats, atol=1e-5)
    plain, _ = predict(model, x, 32, cpu, 4)
    assert not np.allclose(plain, prob, atol=1e-6)  # the views do change the answer of an asymmetric net
    # the batched views give what scoring each view on its own and averaging gives
    each = np.mean([predict(model, v, 32, cpu, 4)[0] for v in dihedral_views(x, 4)], axis=0)
    np.testing.assert_allclose(predict(model, x, 32, cpu, 4, tta=4)[0], each, atol=1e-6)


def test_an_unknown_view_count_is_refused() -> None:
    with pytest.raises(ParamError, match="tta=3 is not a number of dihedral views; use 1, 4 or 8"):
        predict(torch.nn.Identity(), torch.zeros(1, 12, 64, 64), 64, torch.device("cpu"), 1, tta=3)


def test_embed_tta_param_is_validated() -> None:
    from landslide_dvc.core.inference import EmbedParams
    from landslide_dvc.core.params import parse_section

    with pytest.raises(ParamError, match=r"embed.tta=2 must be 1, 4 or 8"):
        parse_section({"batch_size": 8, "device": "cpu", "tta": 2, "threads": 2}, EmbedParams, "embed")
