"""ssim_matrix against skimage's structural_similarity, pair by pair, on both backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from landslide_dvc.core.errors import DataError, ParamError
from landslide_dvc.core.ssim import resolve_data_range, skimage_pair_loop, ssim_matrix

BACKENDS = ["numba", "torch"]


def smooth(rng: np.random.Generator, shape: tuple[int, ...], sigma: float = 2.0) -> np.ndarray:
    """Spatially correlated fields, like normalised Sentinel bands."""
    return gaussian_filter(rng.standard_normal(shape), sigma=(0, 0, sigma, sigma))


def structured(rng: np.random.Generator, channels: int, height: int, width: int) -> np.ndarray:
    """Smooth fields, constant images and scaled / shifted copies of one image."""
    base = smooth(rng, (4, channels, height, width))
    imgs = [
        *base,
        np.full((channels, height, width), 0.25),
        np.full((channels, height, width), -0.5),
        2.0 * base[0],
        base[0] + 0.3,
        -base[1],
        0.5 * base[2] - 0.1,
        base[3] + 0.01 * rng.standard_normal((channels, height, width)),
    ]
    return np.stack(imgs)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("channels", "height", "width"),
    [(1, 16, 24), (3, 7, 7), (12, 20, 17)],
)
def test_random_images_match_skimage(backend: str, channels: int, height: int, width: int) -> None:
    rng = np.random.default_rng(channels * 100 + height)
    images = rng.standard_normal((11, channels, height, width))
    r = float(images.max() - images.min())
    got = ssim_matrix(images, backend=backend)
    np.testing.assert_allclose(got, skimage_pair_loop(images, r), atol=1e-5, rtol=0)
    # float64 inputs: skimage computes in float64 too, so agreement is at rounding level
    np.testing.assert_allclose(got, skimage_pair_loop(images, r), atol=1e-10, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("data_range", [None, 4.0, 50.0])
def test_structured_images_match_skimage(backend: str, data_range: float | None) -> None:
    rng = np.random.default_rng(7)
    images = structured(rng, 3, 16, 24)
    r = float(images.max() - images.min()) if data_range is None else data_range
    got = ssim_matrix(images, data_range, backend=backend)
    np.testing.assert_allclose(got, skimage_pair_loop(images, r), atol=1e-5, rtol=0)
    # two constant images: zero variances, so SSIM is the luminance term alone
    a, b, c1 = 0.25, -0.5, (0.01 * r) ** 2
    assert got[4, 5] == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_twelve_band_smooth_set_with_blocking(backend: str) -> None:
    # 13 images (not a multiple of the 8 SIMD lanes) in blocks of 5 and torch batches of
    # 7 pairs: diagonal and off-diagonal blocks, padded lanes, partial batches
    rng = np.random.default_rng(3)
    images = smooth(rng, (13, 12, 24, 16)).astype(np.float64)
    r = float(images.max() - images.min())
    want = skimage_pair_loop(images, r)
    whole = ssim_matrix(images, backend=backend)
    blocked = ssim_matrix(images, backend=backend, block_size=5, pair_batch=7)
    np.testing.assert_allclose(whole, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(blocked, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(blocked, whole, atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_float32_images_with_set_range(backend: str) -> None:
    # skimage keeps float32 inputs in float32; on normalised data that stays well within 1e-5
    rng = np.random.default_rng(11)
    images = smooth(rng, (9, 12, 32, 32)).astype(np.float32)
    r = resolve_data_range(images)  # max - min taken in float64
    assert r == pytest.approx(float(images.max()) - float(images.min()), abs=0)
    got = ssim_matrix(images, backend=backend)
    np.testing.assert_allclose(got, skimage_pair_loop(images, r), atol=1e-5, rtol=0)
    np.testing.assert_allclose(got, skimage_pair_loop(images.astype(np.float64), r), atol=1e-10, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("data_range", [None, 100.0])
def test_uint8_images(backend: str, data_range: float | None) -> None:
    rng = np.random.default_rng(5)
    fields = smooth(rng, (8, 3, 16, 20))
    images = np.clip(128 + 40 * fields / fields.std(), 0, 255).astype(np.uint8)
    images[3] = 200  # a constant image
    got = ssim_matrix(images, data_range, backend=backend)
    # skimage's default for uint8 is the dtype range, 255
    np.testing.assert_allclose(got, skimage_pair_loop(images, data_range), atol=1e-5, rtol=0)


def test_integer_and_bool_ranges_follow_skimage() -> None:
    assert resolve_data_range(np.zeros((1, 1, 7, 7), np.uint8)) == 255.0
    assert resolve_data_range(np.zeros((1, 1, 7, 7), np.int8)) == 255.0
    assert resolve_data_range(np.zeros((1, 1, 7, 7), np.int16)) == 65535.0
    assert resolve_data_range(np.zeros((1, 1, 7, 7), np.uint16)) == 65535.0
    assert resolve_data_range(np.zeros((1, 1, 7, 7), bool)) == 1.0
    assert resolve_data_range(torch.zeros((1, 1, 7, 7), dtype=torch.uint8)) == 255.0
    assert resolve_data_range(np.zeros((1, 1, 7, 7)), data_range=3) == 3.0


def test_int16_and_bool_inputs() -> None:
    rng = np.random.default_rng(9)
    ints = (1000 * smooth(rng, (6, 2, 12, 12))).astype(np.int16)
    np.testing.assert_allclose(
        ssim_matrix(ints, backend="numba"), skimage_pair_loop(ints, 65535.0), atol=1e-5, rtol=0
    )
    masks = rng.random((6, 2, 12, 12)) > 0.5
    np.testing.assert_allclose(
        ssim_matrix(masks, backend="numba"), skimage_pair_loop(masks.astype(np.float64), 1.0), atol=1e-5, rtol=0
    )


def test_backends_agree_and_matrix_is_symmetric_with_unit_diagonal() -> None:
    rng = np.random.default_rng(21)
    images = smooth(rng, (17, 4, 18, 22))
    a = ssim_matrix(images, backend="numba")
    b = ssim_matrix(torch.from_numpy(images), backend="torch", device="cpu")
    np.testing.assert_allclose(a, b, atol=1e-12, rtol=0)
    for m in (a, b):
        assert m.shape == (17, 17) and m.dtype == np.float64
        np.testing.assert_array_equal(m, m.T)
        np.testing.assert_array_equal(np.diag(m), np.ones(17))
        assert np.all(m <= 1.0 + 1e-12) and np.all(m >= -1.0)


def test_torch_tensor_input_and_auto_backend() -> None:
    rng = np.random.default_rng(4)
    images = smooth(rng, (6, 2, 10, 10)).astype(np.float32)
    want = ssim_matrix(images, backend="numba")
    np.testing.assert_allclose(ssim_matrix(torch.from_numpy(images)), want, atol=1e-12, rtol=0)
    np.testing.assert_allclose(ssim_matrix(torch.from_numpy(images), backend="numba"), want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_image_is_one(backend: str) -> None:
    out = ssim_matrix(np.zeros((1, 3, 8, 8)), data_range=1.0, backend=backend)
    np.testing.assert_array_equal(out, np.ones((1, 1)))


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((3, 8, 8)), "shaped \\(N, C, H, W\\)"),
        (np.zeros((0, 3, 8, 8)), "N = 0"),
        (np.zeros((2, 0, 8, 8)), "no channels"),
        (np.zeros((2, 3, 6, 8)), "at least 7 x 7"),
        (np.zeros((2, 3, 8, 6)), "at least 7 x 7"),
        (np.array([[[[np.nan] * 8] * 8]] * 2), "NaN or Inf"),
        (np.full((2, 1, 8, 8), np.inf), "NaN or Inf"),
        (np.zeros((2, 1, 8, 8), dtype=complex), "real"),
        (np.full((3, 2, 8, 8), 0.5), "pass data_range"),
    ],
)
def test_bad_images_raise_data_error(images: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        ssim_matrix(images, backend="numba")


def test_nan_tensor_raises_data_error() -> None:
    bad = torch.zeros((2, 1, 8, 8))
    bad[1, 0, 3, 3] = float("nan")
    with pytest.raises(DataError, match="NaN or Inf"):
        ssim_matrix(bad, data_range=1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data_range": 0.0}, "> 0"),
        ({"data_range": -1.0}, "> 0"),
        ({"data_range": float("nan")}, "> 0"),
        ({"data_range": "1"}, "positive number"),
        ({"backend": "cuda"}, "backend must be one of"),
        ({"block_size": 0}, "block_size"),
        ({"pair_batch": 0}, "pair_batch"),
    ],
)
def test_bad_parameters_raise_param_error(kwargs: dict, message: str) -> None:
    with pytest.raises(ParamError, match=message):
        ssim_matrix(np.zeros((2, 1, 8, 8)), **kwargs)


def test_messages_are_one_line() -> None:
    with pytest.raises(DataError) as info:
        ssim_matrix(np.zeros((2, 1, 5, 5)))
    assert "\n" not in str(info.value)
