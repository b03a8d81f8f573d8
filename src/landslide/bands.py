"""The Zindi channel layout (DATA-FORMATS.md) and the paper's band names (Fig. 7)."""

from __future__ import annotations

PATCH_SIZE = 64

# Order of the last axis of every train_data/{ID}.npy and test_data/{ID}.npy (H, W, 12).
# D* = Sentinel-1 descending orbit, A* = ascending; xDVV/xDVH = post-event minus pre-event (dB).
RAW_BANDS: tuple[str, ...] = (
    "Red",   # Sentinel-2 B4, reflectance
    "Green", # Sentinel-2 B3
    "Blue",  # Sentinel-2 B2
    "NIR",   # Sentinel-2 B8
    "DVV",   # descending VV backscatter, post-event, dB
    "DVH",   # descending VH
    "DDVV",  # descending VV change (post - pre), dB
    "DDVH",  # descending VH change
    "AVV",   # ascending VV backscatter, post-event, dB
    "AVH",   # ascending VH
    "ADVV",  # ascending VV change
    "ADVH",  # ascending VH change
)
N_RAW_BANDS = len(RAW_BANDS)
BAND_INDEX: dict[str, int] = {name: i for i, name in enumerate(RAW_BANDS)}
OPTICAL_BANDS: tuple[str, ...] = RAW_BANDS[:4]
SAR_BANDS: tuple[str, ...] = RAW_BANDS[4:]
