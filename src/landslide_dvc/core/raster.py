"""Values as a raster declares them: GDAL's per-band scale and offset.

A GeoTIFF may say that its stored numbers are not the values: GDAL's band metadata holds a scale
and an offset per band (value = raw x scale + offset), which `gdal_translate` carries over, for
example, from Sentinel-2 L2A products of processing baseline 04.00 and later (offset -1000 on the
digital numbers). Every reader of user rasters applies them before anything else, so that a scene
stored as DN + 1000 with offset -1000 gives the same values as the offset-free scene.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DeclaredScaling:
    """A raster's per-band scales and offsets, as GDAL reports them (1 and 0 where none is declared)."""

    scales: tuple[float, ...]
    offsets: tuple[float, ...]

    @classmethod
    def of(cls, src: Any) -> DeclaredScaling:
        """The scaling an open rasterio dataset declares."""
        scales = tuple(1.0 if s is None else float(s) for s in src.scales)
        offsets = tuple(0.0 if o is None else float(o) for o in src.offsets)
        return cls(scales, offsets)

    @property
    def is_identity(self) -> bool:
        return all(s == 1.0 for s in self.scales) and all(o == 0.0 for o in self.offsets)

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Values (bands, ...) float32 of raw numbers (bands, ...); raw itself when nothing is declared."""
        if self.is_identity:
            return raw
        scales = np.asarray(self.scales, np.float32).reshape((-1,) + (1,) * (raw.ndim - 1))
        offsets = np.asarray(self.offsets, np.float32).reshape((-1,) + (1,) * (raw.ndim - 1))
        return raw.astype(np.float32, copy=False) * scales + offsets

    def describe(self) -> str:
        """One line for a map's tags: which bands had which scale and offset applied."""
        if self.is_identity:
            return "none declared"
        return "; ".join(
            f"band {k + 1}: x {s:g} + {o:g}" for k, (s, o) in enumerate(zip(self.scales, self.offsets)) if (s, o) != (1.0, 0.0)
        )


__all__ = ["DeclaredScaling"]
