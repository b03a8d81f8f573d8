"""Derived channels (Table 2: 20 and 28 channels) against their formulas and skimage."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.feature import canny
from skimage.filters import sobel

from landslide_dvc.core.bands import BAND_INDEX
from landslide_dvc.core.channels import (
    EDGE_CHANNELS,
    INDEX_CHANNELS,
    channel_names,
    check_optical_scale,
    derive_channels,
    raw_to_channels,
)
from landslide_dvc.core.errors import DataError


@pytest.fixture
def raw() -> np.ndarray:
    rng = np.random.default_rng(0)
    raw = rng.normal(-12, 3, size=(3, 12, 16, 16)).astype(np.float32)
    raw[:, :4] = rng.uniform(0.01, 0.5, size=(3, 4, 16, 16))
    return raw


def test_channel_names_and_counts(raw: np.ndarray) -> None:
    assert len(channel_names(12)) == 12 and channel_names(12)[4] == "DVV"
    assert channel_names(20)[12:] == list(INDEX_CHANNELS)
    assert channel_names(28)[20:] == list(EDGE_CHANNELS)
    for n in (12, 20, 28):
        assert derive_channels(raw, n).shape == (3, n, 16, 16)
    np.testing.assert_array_equal(derive_channels(raw, 12), raw)


def test_index_channels_follow_their_formulas(raw: np.ndarray) -> None:
    out = derive_channels(raw, 20).astype(np.float64)
    b = {name: raw[:, i].astype(np.float64) for name, i in BAND_INDEX.items()}
    red, green, blue, nir = b["Red"], b["Green"], b["Blue"], b["NIR"]
    expected = {
        "NDVI": (nir - red) / (nir + red),
        "EVI2": 2.5 * (nir - red) / (nir + 2.4 * red + 1),
        "VARI": np.clip((green - red) / (green + red - blue), -1, 1),
        "REDR": red / (red + green + blue),
        "DVH_DVV": b["DVH"] - b["DVV"],
        "AVH_AVV": b["AVH"] - b["AVV"],
        "DVV_PRE": b["DVV"] - b["DDVV"],
        "AVV_PRE": b["AVV"] - b["ADVV"],
    }
    names = channel_names(20)
    for name, values in expected.items():
        np.testing.assert_allclose(out[:, names.index(name)], values, rtol=2e-4, atol=2e-4, err_msg=name)


def test_ratio_with_zero_denominator_is_zero() -> None:
    raw = np.zeros((1, 12, 8, 8), np.float32)
    out = derive_channels(raw, 20)
    assert np.isfinite(out).all()
    assert np.all(out[:, channel_names(20).index("NDVI")] == 0)


def test_edge_channels_match_skimage(raw: np.ndarray) -> None:
    out = derive_channels(raw, 28)
    names = channel_names(28)
    for i in range(raw.shape[0]):
        for source in ("NDVI", "NIR", "DDVV", "ADVV"):
            band = out[i, names.index(source)].astype(np.float64)
            np.testing.assert_allclose(out[i, names.index(f"SOBEL_{source}")], sobel(band), rtol=1e-5, atol=1e-6)
            edges = canny(band, sigma=1.0, low_threshold=0.8, high_threshold=0.9, use_quantiles=True)
            np.testing.assert_array_equal(out[i, names.index(f"CANNY_{source}")], edges.astype(np.float32))
    canny_maps = out[:, names.index("CANNY_NIR")]
    assert set(np.unique(canny_maps)) <= {0.0, 1.0} and canny_maps.sum() > 0


def test_evi2_on_digital_numbers_equals_evi2_on_reflectance(raw: np.ndarray) -> None:
    digital_numbers = raw.astype(np.float64)
    digital_numbers[:, :4] *= 10000.0  # Sentinel-2 DN, as the Zindi files store them
    names = channel_names(28)
    from_dn = raw_to_channels(digital_numbers, 28, optical_scale=10000)
    from_reflectance = raw_to_channels(raw, 28, optical_scale=1)
    evi2 = names.index("EVI2")
    red, nir = raw[:, 0].astype(np.float64), raw[:, 3].astype(np.float64)
    np.testing.assert_allclose(from_dn[:, evi2], 2.5 * (nir - red) / (nir + 2.4 * red + 1), rtol=1e-4, atol=1e-5)
    for k, name in enumerate(names):
        if name.startswith("CANNY_"):  # 0/1 maps: a few pixels at the hysteresis quantile may flip
            assert np.mean(from_dn[:, k] != from_reflectance[:, k]) < 0.01, name
        else:
            np.testing.assert_allclose(from_dn[:, k], from_reflectance[:, k], rtol=1e-4, atol=1e-5, err_msg=name)
    # without the conversion EVI2's "+ 1" means something else on digital numbers
    wrong = derive_channels(digital_numbers.astype(np.float32), 20)[:, evi2]
    assert np.abs(wrong - from_reflectance[:, evi2]).mean() > 0.1


def test_raw_to_channels_leaves_its_input_alone(raw: np.ndarray) -> None:
    before = raw.copy()
    out = raw_to_channels(raw, 12, optical_scale=4.0)
    np.testing.assert_array_equal(raw, before)
    np.testing.assert_allclose(out[:, :4], raw[:, :4] / 4.0)
    np.testing.assert_array_equal(out[:, 4:], raw[:, 4:])  # SAR (dB) untouched
    with pytest.raises(ValueError, match="optical_scale must be > 0"):
        raw_to_channels(raw, 12, optical_scale=0)


@pytest.mark.parametrize(
    ("optical_factor", "setting", "expected"),
    [
        (1.0, 10000, r"look like reflectance \(99th percentile 0\.49.*set data.optical_scale: 1$"),
        (10000.0, 1, "look like Sentinel-2 digital numbers .*set data.optical_scale: 10000$"),
        (60.0, 1, "neither reflectance nor digital numbers at data.optical_scale: 1 .*check the band order"),
        (0.0, 1, "neither reflectance nor digital numbers"),
    ],
)
def test_optical_scale_check_says_which_setting_fits(raw: np.ndarray, optical_factor: float, setting: int, expected: str) -> None:
    data = raw.copy()
    data[:, :4] *= optical_factor
    with pytest.raises(DataError, match=expected):
        check_optical_scale(data, setting, "train")
    if optical_factor in (1.0, 10000.0):
        check_optical_scale(data, optical_factor, "train")  # the matching setting passes


def test_optical_scale_check_is_robust_to_a_few_outliers(raw: np.ndarray) -> None:
    data = raw.copy()
    data[0, 0, :2, :2] = 65535.0  # a few saturated pixels in reflectance data
    check_optical_scale(data, 1, "train")
    data = raw * np.array([10000.0] * 4 + [1.0] * 8, np.float32)[None, :, None, None]
    data[1, 2, :3, :3] = 0.0  # no-data pixels in digital numbers
    check_optical_scale(data, 10000, "train")
