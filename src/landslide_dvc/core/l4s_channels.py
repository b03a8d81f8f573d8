"""Landslide4Sense channel sets: the 14 released bands, or 17 with three band differences.

Here in core, not beside the dataset reader (`landslide_dvc.formats.l4s`), because two layers
derive the channels: `normalize` for the training splits and `landslide-dvc predict` for a
segmentation bundle's scenes (serving imports only core), and both must compute them alike.

The release stores its bands already rescaled (means near 0, standard deviations near 1) with
constants it does not publish, so reflectance ratios such as NDVI cannot be recovered from the
files; the derived channels are therefore band differences, which keep their meaning under a
per-band affine rescaling up to scale and offset:
  B8-B4   near infrared minus red: vegetation contrast (falls on fresh scars, NDVI's numerator)
  B3-B8   green minus near infrared: water (NDWI's numerator)
  B12-B8  short-wave infrared minus near infrared: bare soil and rock (NBR's numerator, negated)
Arrays are channel-first batches (N, C, H, W).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from landslide_dvc.core.bands import L4S_BANDS

DIFFERENCE_CHANNELS: tuple[tuple[str, str, str], ...] = (
    ("B8-B4", "B8", "B4"),
    ("B3-B8", "B3", "B8"),
    ("B12-B8", "B12", "B8"),
)
L4SChannelSet = Literal[14, 17]
L4S_CHANNEL_SETS: tuple[int, ...] = (14, 17)


def l4s_channel_names(channels: L4SChannelSet) -> list[str]:
    """14: the bands as released; 17: + the three band differences."""
    names = list(L4S_BANDS) + ([name for name, _, _ in DIFFERENCE_CHANNELS] if channels >= 17 else [])
    if len(names) != channels:
        raise ValueError(f"unsupported Landslide4Sense channel set {channels}")
    return names


def derive_l4s_channels(raw: np.ndarray, channels: L4SChannelSet) -> np.ndarray:
    """Bands (N, 14, H, W) -> the channel set (N, channels, H, W), float32.

    With 14 channels a float32 input is returned as is (no copy), as `normalize` relies on.
    """
    if raw.ndim != 4 or raw.shape[1] != len(L4S_BANDS):
        raise ValueError(f"expected bands of shape (N, {len(L4S_BANDS)}, H, W), got {raw.shape}")
    index = {name: i for i, name in enumerate(L4S_BANDS)}
    parts = [raw.astype(np.float32, copy=False)]
    if channels >= 17:
        parts.append(np.stack([raw[:, index[a]] - raw[:, index[b]] for _, a, b in DIFFERENCE_CHANNELS], axis=1))
    out = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    if out.shape[1] != channels:
        raise ValueError(f"unsupported Landslide4Sense channel set {channels}")
    return out.astype(np.float32, copy=False)
