"""Derived channels (Table 2: 20 and 28 channels) against their formulas and skimage."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.feature import canny
from skimage.filters import sobel

from landslide.bands import BAND_INDEX
from landslide.channels import (
    EDGE_CHANNELS,
    INDEX_CHANNELS,
    channel_names,
    derive_channels,
)


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
