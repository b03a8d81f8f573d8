"""Terrain for the slope rule of a map: slope in degrees from a digital elevation model, and smooth outlines.

Slope uses Horn's (1981) third-order finite differences over each pixel's 3 x 3 neighbourhood, the
method of `gdaldem slope` and most GIS packages: it weighs the four direct neighbours twice, so one
noisy elevation moves the slope less than plain central differences would. At the grid's edges the
elevations are extrapolated linearly by one pixel, so a plane has its slope up to the edge. Horizontal distances come from the grid: the CRS's linear unit on a projected
grid, and metres on a sphere of radius 6,371,008.8 m at each row's latitude on a geographic one.
Elevations are taken as metres (every global DEM a user downloads - Copernicus GLO-30, SRTM, ALOS
AW3D30 - is in metres).

Outlines are smoothed by Chaikin's corner cutting: each pass replaces every vertex of a ring by two
points at 1/4 and 3/4 along its edges, which turns the staircase of a pixel-edge outline into a curve
inside the original outline (QGIS's "Smooth" does the same). The rings are first cut into pixel-long
segments, so the rounding stays within about a pixel of the outline.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.geo import EARTH_RADIUS_M, Georef

# Horn's weights for dz/dx (columns, west -> east); dz/dy is its transpose (rows, north -> south)
_HORN_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0


def pixel_spacing_m(georef: Georef, height: int) -> tuple[np.ndarray, float]:
    """The ground size of a pixel in metres: (per-row widths (H,), height); north-up grids only."""
    t = georef.transform
    if t.b != 0 or t.d != 0:
        raise DataError("the scene's grid is rotated; warp it north-up first (`gdalwarp -r bilinear`) to compute slope")
    if georef.crs.is_geographic:
        latitude = np.radians(t.f + t.e * (np.arange(height) + 0.5))
        degree = math.radians(1.0) * EARTH_RADIUS_M
        return np.abs(t.a) * degree * np.cos(latitude), abs(t.e) * degree
    try:
        metres = float(georef.crs.linear_units_factor[1])
    except Exception:  # noqa: BLE001 - rasterio raises CRSError for CRSs without linear units
        raise DataError(f"the scene's CRS {georef.crs} has no linear unit, so slope cannot be computed") from None
    return np.full(height, abs(t.a) * metres), abs(t.e) * metres


def slope_degrees(elevation: np.ndarray, georef: Georef) -> np.ndarray:
    """Slope (H, W) float32 in degrees of an elevation grid (H, W) in metres; NaN next to a NaN elevation."""
    from scipy import ndimage

    if elevation.ndim != 2 or min(elevation.shape) < 2:
        raise DataError(f"an elevation grid must be 2-D and at least 2 x 2 pixels; got shape {elevation.shape}")
    # one ring of pixels extrapolated linearly (2 z_edge - z_inner), so a plane keeps its slope to the edges
    heights = np.pad(elevation.astype(np.float64), 1, mode="reflect", reflect_type="odd")
    widths, height = pixel_spacing_m(georef, elevation.shape[0])
    dz_dx = ndimage.correlate(heights, _HORN_X)[1:-1, 1:-1] / widths[:, None]
    dz_dy = ndimage.correlate(heights, _HORN_X.T)[1:-1, 1:-1] / height
    return np.degrees(np.arctan(np.hypot(dz_dx, dz_dy))).astype(np.float32)


def _chaikin_ring(coords: np.ndarray, passes: int) -> np.ndarray:
    """A closed ring (n + 1, 2), first point repeated last, after ``passes`` of corner cutting."""
    ring = coords[:-1]
    for _ in range(passes):
        following = np.roll(ring, -1, axis=0)
        ring = np.stack([0.75 * ring + 0.25 * following, 0.25 * ring + 0.75 * following], axis=1).reshape(-1, 2)
    return np.vstack([ring, ring[:1]])


def smooth_outline(polygon: Any, passes: int, step: float) -> Any:
    """``polygon`` (shapely) with its exterior and holes smoothed by ``passes`` of Chaikin's corner cutting.

    The rings are first cut into segments of at most ``step`` (a pixel's side), so each pass rounds a corner
    over about a quarter of a pixel whatever the length of the straight edges beside it.
    """
    from shapely import make_valid, segmentize
    from shapely.geometry import Polygon

    if passes <= 0:
        return polygon
    polygon = segmentize(polygon, step)
    exterior = _chaikin_ring(np.asarray(polygon.exterior.coords), passes)
    holes = [_chaikin_ring(np.asarray(ring.coords), passes) for ring in polygon.interiors]
    smoothed = Polygon(exterior, holes)
    return smoothed if smoothed.is_valid else make_valid(smoothed)


__all__ = ["pixel_spacing_m", "slope_degrees", "smooth_outline"]
