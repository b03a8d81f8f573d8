"""Input channel sets of the paper's Table 2: 12 raw bands, 20 (+ indices), 28 (+ edge maps).

All derived channels are computed from physical units, before normalisation: optical bands
as reflectance (the Zindi files store Sentinel-2 digital numbers = reflectance x 10,000, so
``raw_to_channels`` divides them by ``optical_scale`` first; EVI2's "+ 1" assumes reflectance),
SAR bands in dB. Arrays here are channel-first batches (N, C, H, W).

Derived channels (12 -> 20):
  NDVI     = (NIR - Red) / (NIR + Red)                  vegetation; drops on fresh scars
  EVI2     = 2.5 (NIR - Red) / (NIR + 2.4 Red + 1)      two-band EVI, less saturated than NDVI
  VARI     = (Green - Red) / (Green + Red - Blue)        visible atmospherically resistant index,
                                                        clipped to [-1, 1] (its denominator can vanish)
  REDR     = Red / (Red + Green + Blue)                  red ratio (chromaticity): bare soil is redder
  DVH_DVV  = DVH - DVV                                  descending VH/VV ratio (a ratio is a difference in dB)
  AVH_AVV  = AVH - AVV                                  ascending VH/VV ratio
  DVV_PRE  = DVV - DDVV                                 descending pre-event VV backscatter (post - change)
  AVV_PRE  = AVV - ADVV                                 ascending pre-event VV backscatter
Edge maps (20 -> 28), per image, on NDVI, NIR, DDVV and ADVV:
  SOBEL_x  = skimage.filters.sobel (gradient magnitude)
  CANNY_x  = skimage.feature.canny(sigma=1, hysteresis at the 80th/90th gradient percentiles), 0/1
Ratios with a vanishing denominator (|d| < 1e-6) are set to 0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from landslide_dvc.core.bands import BAND_INDEX, OPTICAL_BANDS, RAW_BANDS
from landslide_dvc.core.errors import DataError

ChannelSet = Literal[12, 20, 28]

INDEX_CHANNELS: tuple[str, ...] = ("NDVI", "EVI2", "VARI", "REDR", "DVH_DVV", "AVH_AVV", "DVV_PRE", "AVV_PRE")
EDGE_SOURCES: tuple[str, ...] = ("NDVI", "NIR", "DDVV", "ADVV")
EDGE_CHANNELS: tuple[str, ...] = tuple(f"SOBEL_{s}" for s in EDGE_SOURCES) + tuple(
    f"CANNY_{s}" for s in EDGE_SOURCES
)
_EPS = 1e-6

# The 99th percentile of optical reflectance is about 0.1-1.5 on real scenes (clouds reach ~2.1).
# Divided by the declared scale it must fall in this window: digital numbers read with scale 1
# (~1,000-15,000) and reflectance read with scale 10,000 (~1e-4) both land far outside it.
REFLECTANCE_P99_RANGE = (0.005, 20.0)
OPTICAL_SCALES = (1.0, 10000.0)  # reflectance, Sentinel-2 digital numbers
_SCALE_CHECK_IMAGES = 512  # images sampled (evenly) for the percentile


def channel_names(channels: ChannelSet) -> list[str]:
    """Names of the channels produced by ``derive_channels`` for a channel set."""
    names = list(RAW_BANDS)
    if channels >= 20:
        names += INDEX_CHANNELS
    if channels >= 28:
        names += EDGE_CHANNELS
    if len(names) != channels:
        raise ValueError(f"unsupported channel set {channels}")
    return names


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is (nearly) zero."""
    small = np.abs(denominator) < _EPS
    return np.where(small, 0.0, numerator / np.where(small, 1.0, denominator)).astype(np.float32)


def index_channels(raw: np.ndarray) -> np.ndarray:
    """The 8 index/SAR-feature channels (N, 8, H, W) from raw bands (N, 12, H, W)."""
    band = {name: raw[:, i].astype(np.float32) for name, i in BAND_INDEX.items()}
    red, green, blue, nir = band["Red"], band["Green"], band["Blue"], band["NIR"]
    derived = [
        safe_ratio(nir - red, nir + red),
        safe_ratio(2.5 * (nir - red), nir + 2.4 * red + 1.0),
        np.clip(safe_ratio(green - red, green + red - blue), -1.0, 1.0),
        safe_ratio(red, red + green + blue),
        band["DVH"] - band["DVV"],
        band["AVH"] - band["AVV"],
        band["DVV"] - band["DDVV"],
        band["AVV"] - band["ADVV"],
    ]
    return np.stack(derived, axis=1).astype(np.float32)


def edge_channels(sources: np.ndarray) -> np.ndarray:
    """Sobel magnitude and Canny edges (N, 8, H, W) of the 4 source bands (N, 4, H, W)."""
    from skimage.feature import canny
    from skimage.filters import sobel

    n, n_src, h, w = sources.shape
    out = np.empty((n, 2 * n_src, h, w), dtype=np.float32)
    for i in range(n):
        for j in range(n_src):
            image = sources[i, j].astype(np.float64)
            out[i, j] = sobel(image)
            # Quantile thresholds make Canny independent of each band's physical scale.
            out[i, n_src + j] = canny(image, sigma=1.0, low_threshold=0.8, high_threshold=0.9, use_quantiles=True)
    return out


def derive_channels(raw: np.ndarray, channels: ChannelSet) -> np.ndarray:
    """Raw bands (N, 12, H, W) -> the requested channel set (N, channels, H, W), float32."""
    if raw.ndim != 4 or raw.shape[1] != len(RAW_BANDS):
        raise ValueError(f"expected raw bands of shape (N, 12, H, W), got {raw.shape}")
    parts = [raw.astype(np.float32, copy=False)]
    if channels >= 20:
        indices = index_channels(raw)
        parts.append(indices)
        if channels >= 28:
            by_name = {name: k for k, name in enumerate(INDEX_CHANNELS)}
            sources = np.stack(
                [indices[:, by_name[s]] if s in by_name else raw[:, BAND_INDEX[s]] for s in EDGE_SOURCES], axis=1
            )
            parts.append(edge_channels(sources))
    out = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    if out.shape[1] != channels:
        raise ValueError(f"unsupported channel set {channels}")
    return out


def to_reflectance(raw: np.ndarray, optical_scale: float) -> np.ndarray:
    """A float32 copy of raw bands (N, 12, H, W) with the optical bands divided by ``optical_scale``."""
    if not optical_scale > 0:
        raise ValueError(f"optical_scale must be > 0, got {optical_scale}")
    out = raw.astype(np.float32, copy=True)
    out[:, : len(OPTICAL_BANDS)] /= np.float32(optical_scale)
    return out


def raw_to_channels(raw: np.ndarray, channels: ChannelSet, optical_scale: float) -> np.ndarray:
    """Raw patches as stored (N, 12, H, W) -> the channel set (N, channels, H, W) before standardisation.

    Optical bands are divided by ``optical_scale`` (10000 for Sentinel-2 digital numbers, 1 for
    reflectance) before the indices are derived; SAR bands are taken as dB. ``raw`` is not changed.
    """
    if raw.ndim != 4 or raw.shape[1] != len(RAW_BANDS):
        raise ValueError(f"expected raw bands of shape (N, 12, H, W), got {raw.shape}")
    return derive_channels(to_reflectance(raw, optical_scale), channels)


def optical_percentile(raw: np.ndarray, q: float = 99.0) -> float:
    """The q-th percentile of the optical bands of raw patches (N, 12, H, W), on an even sample of images."""
    pick = np.unique(np.linspace(0, len(raw) - 1, min(len(raw), _SCALE_CHECK_IMAGES)).round().astype(int))
    return float(np.percentile(raw[pick, : len(OPTICAL_BANDS)], q))


def check_optical_scale(raw: np.ndarray, optical_scale: float, source: str) -> None:
    """Refuse raw patches whose optical values contradict ``optical_scale``, saying which setting fits."""
    p99 = optical_percentile(raw)
    low, high = REFLECTANCE_P99_RANGE
    if low <= p99 / optical_scale <= high:
        return
    fits = [s for s in OPTICAL_SCALES if low <= p99 / s <= high]
    seen = f"99th percentile {p99:.4g}"
    if fits == [1.0]:
        raise DataError(
            f"{source}: the optical bands look like reflectance ({seen}) but data.optical_scale is "
            f"{optical_scale:g}; set data.optical_scale: 1"
        )
    if fits == [10000.0]:
        raise DataError(
            f"{source}: the optical bands look like Sentinel-2 digital numbers ({seen}) but data.optical_scale is "
            f"{optical_scale:g}; set data.optical_scale: 10000"
        )
    raise DataError(
        f"{source}: the optical bands ({seen}) are neither reflectance nor digital numbers at data.optical_scale: "
        f"{optical_scale:g} (expected {low:g}-{high:g} after dividing by it); check the band order (Red, Green, "
        f"Blue, NIR first) and data.optical_scale"
    )
