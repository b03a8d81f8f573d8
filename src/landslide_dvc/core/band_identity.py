"""Which sensor band each input channel is, the bands pretrained weights were trained on, and their scaling.

Multispectral pretrained weights (SSL4EO-S12's Sentinel-2 and Sentinel-1 encoders, docs/weights.md)
learned one first-layer filter per band of their sensor. To reuse those filters, every channel of
the project's inputs is given its band identity here: the Sentinel-2 band name (``B4``), the
Sentinel-1 polarisation (``VV``), or the change of a polarisation (``dVV``: a post-event minus
pre-event difference in dB). Channels without one (slope, DEM, derived indices, edge maps) have
none and are initialised by the stem's rule (``landslide_dvc.core.stem``).

The same identities give the ``ssl4eo`` normalize method its per-channel statistics: the scaling
the weights were trained with, so the mapped filters see the values they learned on.

Pure numpy: `normalize` uses it without importing torch.
"""

from __future__ import annotations

import numpy as np

# Sentinel-2 Level-1C, the 13 bands in the order of SSL4EO-S12's Sentinel-2 files (and their
# first convolution's input channels): B8A sits between B8 and B9.
S2_L1C_13: tuple[str, ...] = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12")
# Sentinel-1 GRD, the 2 polarisations in the order of SSL4EO-S12's Sentinel-1 files.
S1_VV_VH: tuple[str, ...] = ("VV", "VH")
POLARISATIONS = S1_VV_VH
CHANGE_PREFIX = "d"  # dVV: post-event minus pre-event VV, in dB

# `model.checkpoint_bands` / `seg.checkpoint_bands` names for the published band sets; `rgb` (ImageNet)
# is not mapped by band: timm adapts its 3 filters to any channel count (adapt_input_conv).
RGB = "rgb"
BAND_SETS: dict[str, tuple[str, ...]] = {"s2_l1c_13": S2_L1C_13, "s1_vv_vh": S1_VV_VH}
KNOWN_BANDS: tuple[str, ...] = S2_L1C_13 + S1_VV_VH

# The Zindi channels (core/bands.py RAW_BANDS): Sentinel-2 B4, B3, B2, B8; Sentinel-1 descending (D)
# and ascending (A) orbits, post-event backscatter and its change.
ZINDI_CHANNEL_BANDS: dict[str, str] = {
    "Red": "B4", "Green": "B3", "Blue": "B2", "NIR": "B8",
    "DVV": "VV", "DVH": "VH", "AVV": "VV", "AVH": "VH",
    "DDVV": "dVV", "DDVH": "dVH", "ADVV": "dVV", "ADVH": "dVH",
}
# The Landslide4Sense channels (core/bands.py L4S_BANDS): Sentinel-2 B1-B12 without B8A keep their
# names; slope and DEM (ALOS PALSAR) and the band differences have no band.
L4S_CHANNEL_BANDS: dict[str, str] = {name: name for name in S2_L1C_13 if name != "B8A"}
CHANNEL_BANDS: dict[str, str] = {**ZINDI_CHANNEL_BANDS, **L4S_CHANNEL_BANDS}

# The scaling the weights were trained with.
# Sentinel-2: SSL4EO-S12's Sentinel-2 encoders take top-of-atmosphere digital numbers / 10,000
# (reflectance). `normalize` has already divided the optical bands by data.optical_scale, so a
# Zindi optical channel is reflectance and passes unchanged.
S2_REFLECTANCE_DIVISOR = 10000.0
# Sentinel-1: (dB - mean) / std with the SSL4EO-S12 dataset's published Sentinel-1 GRD statistics
# (Wang et al., 2023, "SSL4EO-S12", the normalisation its Sentinel-1 MoCo encoders, torchgeo's
# ResNet50_Weights.SENTINEL1_ALL_MOCO, were trained with).
S1_DB_MEAN: dict[str, float] = {"VV": -12.59, "VH": -20.26}
S1_DB_STD: dict[str, float] = {"VV": 5.26, "VH": 5.91}


def channel_band(channel: str) -> str | None:
    """The band identity of a channel name, or None (slope, DEM, indices, edges, differences)."""
    return CHANNEL_BANDS.get(channel)


def change_of(band: str | None) -> str | None:
    """``VV`` for ``dVV`` (a change band), else None."""
    if band and band.startswith(CHANGE_PREFIX) and band[len(CHANGE_PREFIX):] in POLARISATIONS:
        return band[len(CHANGE_PREFIX):]
    return None


def weights_scaling(channels: list[str], center: np.ndarray, scale: np.ndarray) -> list[str]:
    """Replace, in place, the fitted (center, scale) of the channels the pretrained weights have a scaling for.

    Optical Sentinel-2 channels (already reflectance = DN / 10,000): center 0, scale 1. Sentinel-1
    backscatter: the published dB mean and std. A change band (post - pre, dB): center 0 (a
    difference of two images of the same polarisation has no offset to remove) and its
    polarisation's std, so it is measured in the unit the filters it takes learned on. Every other
    channel keeps its fitted statistics. Returns one line per replaced channel, for the record.
    """
    notes = []
    for c, name in enumerate(channels):
        band = channel_band(name)
        if band in S2_L1C_13:
            center[c], scale[c] = 0.0, 1.0
            notes.append(f"{name}: {band} reflectance (DN / {S2_REFLECTANCE_DIVISOR:g}) as is")
        elif band in POLARISATIONS:
            center[c], scale[c] = S1_DB_MEAN[band], S1_DB_STD[band]
            mean = S1_DB_MEAN[band]
            notes.append(f"{name}: {band} (dB {'+' if mean < 0 else '-'} {abs(mean):g}) / {S1_DB_STD[band]:g}")
        elif (polarisation := change_of(band)) is not None:
            center[c], scale[c] = 0.0, S1_DB_STD[polarisation]
            notes.append(f"{name}: change of {polarisation}, dB / {S1_DB_STD[polarisation]:g}")
    return notes
