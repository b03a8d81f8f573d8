"""Reading a scene for `landslide-dvc predict`: checks that refuse it in one line, windows, strips.

A scene is a GeoTIFF (or any raster GDAL reads) with the bundle's bands in the bundle's order,
located by a CRS and an affine geotransform. A raster located only by ground control points (GCPs)
or rational polynomial coefficients (RPCs), as raw exports are, has no transform a map could
keep; so has a raster with no georeference at all. Both are refused with the `gdalwarp` command
that fixes them, rather than mapped at 0 deg, 0 deg or in pixel units.

A band's declared scale and offset (GDAL's band metadata, e.g. the -1000 offset of Sentinel-2 L2A
products of processing baseline 04.00 and later, which `gdal_translate` carries over) are applied as
each strip is read (value = raw x scale + offset, `core.raster.DeclaredScaling`), before the bundle's
scale checks and preprocessing; a scene that declares none is read as stored.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landslide_dvc.core.bundle_files import SEGMENTATION
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.raster import DeclaredScaling

Dataset = Any  # an open rasterio dataset (rasterio stays an import inside the functions)


def window_offsets(size: int, stride: int, window: int) -> list[int]:
    """Window starts along one axis: every ``stride`` pixels, plus one flush with the far edge."""
    offsets = list(range(0, size - window + 1, stride))
    if offsets[-1] != size - window:
        offsets.append(size - window)
    return offsets


def _open(path: Path) -> Dataset:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

    try:
        with warnings.catch_warnings():  # a missing georeference is reported below, in one line
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as exc:
        raise DataError(f"{path} is not a readable raster ({str(exc).splitlines()[0]}); give a GeoTIFF") from None


def georeference_problem(src: Dataset, path: Path) -> str | None:
    """Why ``src`` cannot give a map in real coordinates (one line, with the fix), or None."""
    if src.crs is not None and not src.transform.is_identity:
        return None
    warped = f"{path.with_name(path.stem + '_warped.tif')}"
    gcps, _ = src.gcps
    if gcps:
        return (
            f"{path} is located only by {len(gcps)} ground control points (no CRS and geotransform), so a map "
            f"would land at 0 deg, 0 deg; warp it first (`gdalwarp -r bilinear {path} {warped}`) and predict on that"
        )
    if src.rpcs:
        return (
            f"{path} is located only by rational polynomial coefficients (RPCs, no CRS and geotransform); "
            f"orthorectify it first (`gdalwarp -rpc -r bilinear {path} {warped}`) and predict on that"
        )
    if src.crs is None and src.transform.is_identity:
        return f"{path} has no georeference (no CRS, no geotransform); give a georeferenced GeoTIFF"
    if src.crs is None:
        return f"{path} has a geotransform but no CRS; set it first (`gdal_edit.py -a_srs EPSG:<code> {path}`)"
    return f"{path} has a CRS but no geotransform (pixel units); give it one first (`gdal_edit.py -a_ullr ...`)"


def open_scene(path: Path, bands: Sequence[str], window: int, *, kind: str = "classifier") -> Dataset:
    """Open a scene with ``bands`` (the bundle's, in order), refusing what would give a wrong map in one line."""
    src = _open(path)
    try:
        check_scene(src, path, bands, window, kind=kind)
    except DataError:
        src.close()
        raise
    return src


def check_scene(src: Dataset, path: Path, bands: Sequence[str], window: int, *, kind: str = "classifier") -> None:
    """Band count, band types, size and georeference of an open scene (``kind``: the bundle's, named in the band error)."""
    if src.count != len(bands):
        shown = ", ".join(bands[:4]) + (f", ..., {bands[-1]}" if len(bands) > 4 else "")
        if kind == SEGMENTATION:
            raise DataError(
                f"{path} has {src.count} bands; the segmentation bundle needs the {len(bands)} Landslide4Sense bands "
                f"({shown}, in this order): stack them into one {len(bands)}-band GeoTIFF"
            )
        raise DataError(
            f"{path} has {src.count} bands, the bundle expects {len(bands)} ({shown}, in this order); "
            f"stack the bands into one {len(bands)}-band GeoTIFF"
        )
    bad = [d for d in src.dtypes if str(d).startswith("complex") or np.dtype(d).kind not in "iuf"]
    if bad:
        raise DataError(f"{path} has non-numeric (or complex) bands of type {bad[0]}; write the bands as real numbers (e.g. float32)")
    if src.height < window or src.width < window:
        raise DataError(f"{path} is {src.width} x {src.height} px, smaller than one {window} x {window} window")
    problem = georeference_problem(src, path)
    if problem:
        raise DataError(problem)


@dataclass
class Strip:
    """``window`` rows of a scene from ``row`` down, all columns."""

    row: int
    raw: np.ndarray  # (bands, window, width) float32: the stored numbers with the declared scale and offset applied
    invalid: np.ndarray  # (window, width) bool: masked, nodata, NaN or Inf in any band

    def valid_columns(self, cols: Sequence[int], window: int) -> list[int]:
        """The window starts in ``cols`` whose window holds no invalid pixel."""
        bad_per_column = np.concatenate([[0], np.cumsum(self.invalid.sum(axis=0))])
        return [c for c in cols if bad_per_column[c + window] == bad_per_column[c]]

    def windows(self, cols: Sequence[int], window: int) -> np.ndarray:
        """The raw windows (n, bands, window, window) starting at ``cols``."""
        if not cols:
            return np.empty((0, self.raw.shape[0], window, window), np.float32)
        return np.stack([self.raw[:, :, c : c + window] for c in cols])


def read_strip(src: Dataset, row: int, window: int) -> Strip:
    from rasterio.windows import Window

    area = Window(0, row, src.width, window)
    stored = src.read(window=area, out_dtype="float32")
    invalid = (src.read_masks(window=area) == 0).any(axis=0) | ~np.isfinite(stored).all(axis=0)
    return Strip(row, DeclaredScaling.of(src).apply(stored), invalid)


def read_band(src: Dataset, bands: Sequence[str], name: str) -> np.ndarray:
    """The whole band ``name`` (H, W) float32 of a scene with the bundle's ``bands``, NaN where it has no data."""
    index = list(bands).index(name) + 1
    values = src.read(index, out_dtype="float32")
    values[src.read_masks(index) == 0] = np.nan
    return values


def strip_windows(src: Dataset, row: int, cols: list[int], window: int) -> tuple[np.ndarray, list[int]]:
    """The fully valid windows (n, bands, window, window) of the strip starting at ``row``, and their columns."""
    strip = read_strip(src, row, window)
    keep = strip.valid_columns(cols, window)
    return strip.windows(keep, window), keep


@dataclass(frozen=True)
class DemSlope:
    """A user's DEM as slope on a scene's grid, for the slope rule of a scene without a slope band."""

    degrees: np.ndarray  # (H, W) float32; +inf where the DEM has no data (the rule does not apply there)
    coverage: float  # share of the scene's pixels the DEM covers


def dem_slope(path: Path, georef: Any, height: int, width: int) -> DemSlope:
    """Slope in degrees of the DEM ``path`` (band 1, metres), warped bilinearly onto the scene's grid.

    The DEM is resampled to the scene's pixels first and its slope taken there (`core.terrain`), so the
    rule reads the slope at the map's own resolution. Where the DEM has no data (voids, or beyond its
    edge) the slope is unknown, and unknown ground is not taken for flat ground: the rule keeps those
    pixels (the map's tags give the DEM's coverage). A DEM that misses the scene entirely is refused.
    """
    from rasterio.warp import Resampling, reproject

    from landslide_dvc.core.geo import Georef
    from landslide_dvc.core.terrain import slope_degrees

    with _open(path) as dem:
        problem = georeference_problem(dem, path)
        if problem:
            raise DataError(problem.replace("predict on that", "give that as --dem"))
        elevation = np.full((height, width), np.nan, np.float64)
        try:
            reproject(
                dem.read(1, out_dtype="float64", masked=True).filled(np.nan), elevation,
                src_transform=dem.transform, src_crs=dem.crs, src_nodata=np.nan,
                dst_transform=georef.transform, dst_crs=georef.crs, dst_nodata=np.nan,
                resampling=Resampling.bilinear,
            )
        except Exception as exc:  # noqa: BLE001 - GDAL's projection errors come in several classes
            raise DataError(f"--dem {path} cannot be warped onto the scene's grid ({str(exc).splitlines()[0]})") from None
    covered = np.isfinite(elevation)
    if not covered.any():
        raise DataError(f"--dem {path} does not cover the scene; give a DEM of the scene's area (any CRS, metres)")
    slope = slope_degrees(elevation, Georef(georef.crs, georef.transform))
    slope[~np.isfinite(slope)] = np.inf
    return DemSlope(slope, float(covered.mean()))
