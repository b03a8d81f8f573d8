"""The Zindi channel layout (docs/data-formats.md) and the paper's band names (Fig. 7)."""

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

# Landslide4Sense 2022 (docs/data-formats.md): the last axis of every image_N.h5 (H, W, 14), 128 px.
# Sentinel-2 B1-B12 without B8A (index 7 is B8), then ALOS PALSAR slope and DEM.
L4S_PATCH_SIZE = 128
L4S_BANDS: tuple[str, ...] = (
    "B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B12", "slope", "DEM",
)
L4S_OPTICAL_BANDS: tuple[str, ...] = L4S_BANDS[:12]

# True-colour triplets and one band that shows scars without clouds, per layout (for figures).
_RGB_NAMES: tuple[tuple[str, str, str], ...] = (("Red", "Green", "Blue"), ("B4", "B3", "B2"))
_SCAR_PREVIEW: tuple[str, ...] = ("DDVV", "slope")


def rgb_names(channels: list[str]) -> list[str] | None:
    """The (red, green, blue) channel names present in ``channels``, or None."""
    for names in _RGB_NAMES:
        if set(names) <= set(channels):
            return list(names)
    return None


def preview_band(channels: list[str]) -> str:
    """A second band to show beside RGB: SAR change (Zindi), slope (L4S), else the last channel."""
    return next((name for name in _SCAR_PREVIEW if name in channels), channels[-1])


def band_group(name: str) -> str:
    """optical, sar, terrain or derived: for colouring band-importance bars."""
    if name in OPTICAL_BANDS or name in L4S_OPTICAL_BANDS:
        return "optical"
    if name in SAR_BANDS:
        return "sar"
    if name in ("slope", "DEM"):
        return "terrain"
    return "derived"
