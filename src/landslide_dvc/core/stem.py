"""The first convolution of a network built from multispectral pretrained weights, channel by channel.

A pretrained file's stem has one input filter per band it was trained on (SSL4EO-S12 Sentinel-2:
13, Sentinel-1: 2; ``model.checkpoint_bands``). Our stem has one per input channel. Each channel
gets, by band identity (``landslide_dvc.core.band_identity``):

- **its band's filter, unchanged**, when a file has that band (Zindi Red <- B4, NIR <- B8;
  Landslide4Sense B1..B12 <- B1..B12, B8A unused; DVV and AVV <- VV, DVH and AVH <- VH of a
  Sentinel-1 file). Two channels of the same band (the descending and ascending orbit) both take
  it: the BatchNorm after the stem rescales the sum, as it does any input.
- **the change rule** for a SAR change band (DDVV = post - pre of VV, in dB): the filter of its
  polarisation, unchanged. A difference of two dB images of one polarisation is a log-ratio with the
  same spatial structure (edges of a scar, field borders); the ``ssl4eo`` normalize method divides
  it by that polarisation's published std, so it reaches the filter in the unit the filter learned.
- **zeros** for every other channel (slope, DEM, indices, edge maps; SAR under a Sentinel-2-only
  file). The network then starts computing exactly the pretrained features of the matched bands:
  an input of another physical quantity does not disturb them through a filter learned for a
  band it is not. A zero filter still trains (its gradient is the input times the upstream
  gradient, not zero), so the channel is learned from the first step; the mean of the file's
  filters, the other common choice, would feed slope or DEM into the network as if they were an
  average reflectance band.

The mapping is recorded as one ``channel=source`` entry per channel (``stem_record``) in the fold
checkpoint's meta and metrics (and the U-Net's), with the files' sha256: ``Red=B4``, ``DVV=VV@s1``
(a band of the second, Sentinel-1 file), ``DDVV=VV@s1 (change rule)``, ``slope=zeros``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from landslide_dvc.core.band_identity import BAND_SETS, KNOWN_BANDS, RGB, change_of, channel_band
from landslide_dvc.core.errors import ParamError

ZEROS = "zeros"
CHANGE_RULE = "change rule"


def resolve_bands(spec: str | Sequence[str]) -> tuple[str, ...]:
    """The band names of a ``checkpoint_bands`` value (a published set's name or an explicit list)."""
    if isinstance(spec, str):
        return BAND_SETS[spec]
    return tuple(spec)


def bands_problem(spec: str | Sequence[str]) -> str | None:
    """Why a ``checkpoint_bands`` value cannot be used, or None (for the params' validate())."""
    if isinstance(spec, str):
        return None if spec == RGB or spec in BAND_SETS else f"use {RGB}, {', '.join(BAND_SETS)} or a list of bands"
    if not spec:
        return "an explicit list needs at least one band"
    unknown = [b for b in spec if b not in KNOWN_BANDS]
    if unknown:
        return f"{unknown[0]!r} is not a band name; use Sentinel-2 {', '.join(KNOWN_BANDS[:13])} or Sentinel-1 VV, VH"
    if len(set(spec)) != len(spec):
        return "a band is listed twice"
    return None


def bands_label(spec: str | Sequence[str]) -> str:
    """``s2_l1c_13`` or the explicit list as ``B4,B3,B2``, for messages and the record."""
    return spec if isinstance(spec, str) else ",".join(spec)


@dataclass(frozen=True)
class StemFile:
    """One pretrained file's first-convolution filters and the bands they were trained on."""

    weight: torch.Tensor  # (out, len(bands), kh, kw)
    bands: tuple[str, ...]
    tag: str = ""  # how the record names a second file's bands: VV@s1 (the first file's go bare: B4)


def check_stem_shape(weight: torch.Tensor | None, key: str, path: Path, expected: tuple[int, ...], param: str,
                     bands_text: str) -> torch.Tensor:
    """The file's stem, or one line naming the file and the stem shape its declared bands need.

    ``param`` names the file's parameter, ``bands_text`` the bands it declares (e.g.
    ``model.checkpoint_bands=s2_l1c_13``).
    """
    if weight is None or tuple(weight.shape) != expected:
        found = "no tensor" if weight is None else f"shape {tuple(weight.shape)}"
        raise ParamError(
            f"{param}={path}: {key} has {found}, but {bands_text} ({expected[1]} bands) needs a stem of shape "
            f"{expected}; give a file trained on those bands for this network, or fix the bands"
        )
    return weight


def map_stem(channels: Sequence[str], files: Sequence[StemFile]) -> tuple[torch.Tensor, list[str]]:
    """The (out, len(channels), kh, kw) stem and one ``channel=source`` entry per channel (module docstring).

    ``files`` are searched in order: a band found in the first file is taken from it.
    """
    first = files[0].weight
    stem = torch.zeros((first.shape[0], len(channels), *first.shape[2:]), dtype=torch.float32)
    record = []
    for c, name in enumerate(channels):
        band = channel_band(name)
        polarisation = change_of(band)
        wanted = polarisation if polarisation else band
        found = next(((f, f.bands.index(wanted)) for f in files if wanted is not None and wanted in f.bands), None)
        if found is None:
            record.append(f"{name}={ZEROS}")
            continue
        file, index = found
        stem[:, c] = file.weight[:, index].float()
        source = f"{wanted}@{file.tag}" if file.tag else wanted
        record.append(f"{name}={source} ({CHANGE_RULE})" if polarisation else f"{name}={source}")
    return stem, record


def stem_record(record: list[str]) -> str:
    """The mapping as one string, as `dvc exp show` displays it."""
    return "; ".join(record)
