"""The outputs of a scored scene, as GIS users open them: a Cloud Optimized GeoTIFF and polygons.

- **Probability map**: GDAL's COG driver (through rasterio): float32, one band, tiled 256 x 256,
  DEFLATE with the floating-point predictor, average-resampled overviews down to at most 256 px
  (at least one level), nodata NaN (pixels no scored window covers, the scene's own no-data
  among them), the scene's CRS and transform.
- **Polygons**: the connected regions (4-connectivity) of pixels at or above the threshold,
  traced along pixel edges (`rasterio.features.shapes`), with ``area_m2`` (pixel count x pixel
  area; on a geographic CRS each pixel's area on a sphere of radius 6,371,008.8 m), ``mean_prob``
  and ``max_prob``. A `.gpkg` (layer ``landslides``) keeps the scene's CRS; a `.geojson` is
  reprojected to WGS 84 longitude/latitude, as RFC 7946 requires and web maps assume.
- **Atomic**: both files are written under their own names in hidden folders next to the
  targets and renamed onto them together at the end; on any error neither exists.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.io import atomic_paths

POLYGON_SUFFIXES = (".gpkg", ".geojson")
POLYGON_LAYER = "landslides"
COG_BLOCK = 256
EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)


@dataclass(frozen=True)
class Georef:
    """Where a map lies: the scene's CRS (a rasterio CRS) and affine transform."""

    crs: Any
    transform: Any


@dataclass
class Regions:
    """Connected regions at or above a threshold, one row per region."""

    geometries: list[Any]  # shapely Polygons in the map's CRS
    area_m2: np.ndarray  # float64
    mean_prob: np.ndarray  # float64
    max_prob: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.geometries)


def check_polygons_path(path: Path) -> None:
    if path.suffix.lower() not in POLYGON_SUFFIXES:
        raise DataError(f"--polygons {path} must end in .gpkg (GeoPackage, the scene's CRS) or .geojson (WGS 84)")


def overview_count(height: int, width: int, smallest: int = COG_BLOCK) -> int:
    """Halvings until the larger side is at most ``smallest`` px; at least one."""
    return max(1, math.ceil(math.log2(max(height, width) / smallest)))


def write_cog(path: Path, probability: np.ndarray, georef: Georef, tags: dict[str, str]) -> None:
    """``probability`` (H, W) as a float32 Cloud Optimized GeoTIFF, NaN as nodata."""
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy

    height, width = probability.shape
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "float32",
        "crs": georef.crs, "transform": georef.transform, "nodata": float("nan"),
    }
    with MemoryFile() as memory, memory.open(**profile) as staged:
        staged.write(probability.astype(np.float32, copy=False), 1)
        staged.set_band_description(1, "landslide probability")
        staged.update_tags(**tags)
        copy(
            staged, path, driver="COG", BLOCKSIZE=COG_BLOCK, COMPRESS="DEFLATE", PREDICTOR="YES",
            OVERVIEWS="AUTO", OVERVIEW_COUNT=overview_count(height, width), OVERVIEW_RESAMPLING="AVERAGE",
            BIGTIFF="IF_SAFER",
        )


def pixel_areas_m2(rows: np.ndarray, cols: np.ndarray, georef: Georef) -> np.ndarray:
    """Ground area (m^2) of the pixels at (rows, cols)."""
    t = georef.transform
    det = abs(t.a * t.e - t.b * t.d)
    if georef.crs.is_geographic:  # degrees: the pixel's area on a sphere at its centre's latitude
        lat = np.radians(t.d * (cols + 0.5) + t.e * (rows + 0.5) + t.f)
        return EARTH_RADIUS_M**2 * np.cos(lat) * det * math.radians(1.0) ** 2
    try:
        metres = float(georef.crs.linear_units_factor[1])
    except Exception:  # noqa: BLE001 - rasterio raises CRSError for CRSs without linear units
        raise DataError(f"the scene's CRS {georef.crs} has no linear unit, so areas cannot be given in m^2") from None
    return np.full(len(rows), det * metres**2)


def label_regions(probability: np.ndarray, threshold: float) -> tuple[np.ndarray, int]:
    """Labels (H, W) int32 of the 4-connected regions at or above ``threshold`` (0: none), and their count."""
    from scipy import ndimage

    above = np.nan_to_num(probability, nan=-np.inf) >= threshold
    labels, count = ndimage.label(above, structure=ndimage.generate_binary_structure(2, 1))
    return labels.astype(np.int32), int(count)


def find_regions(probability: np.ndarray, threshold: float, georef: Georef) -> Regions:
    """The polygons of the regions at or above ``threshold``, with area and mean and max probability."""
    from rasterio.features import shapes
    from shapely.geometry import shape

    labels, count = label_regions(probability, threshold)
    rows, cols = np.nonzero(labels)
    ids = labels[rows, cols]
    values = probability[rows, cols].astype(np.float64)
    n_pixels = np.bincount(ids, minlength=count + 1)[1:]
    area = np.bincount(ids, weights=pixel_areas_m2(rows, cols, georef), minlength=count + 1)[1:]
    mean = np.bincount(ids, weights=values, minlength=count + 1)[1:] / np.maximum(n_pixels, 1)
    peak = np.full(count + 1, -np.inf)
    np.maximum.at(peak, ids, values)
    geometries: list[Any] = [None] * count
    for geometry, value in shapes(labels, mask=labels > 0, connectivity=4, transform=georef.transform):
        geometries[int(value) - 1] = shape(geometry)
    return Regions(geometries, area, mean, peak[1:])


def write_polygons(path: Path, regions: Regions, georef: Georef) -> None:
    """The regions as a GeoPackage (the scene's CRS) or GeoJSON (reprojected to WGS 84 by GDAL, RFC 7946)."""
    import shapely
    from pyogrio.raw import write

    geojson = path.suffix.lower() == ".geojson"
    write(
        path, np.array([shapely.to_wkb(g) for g in regions.geometries], dtype=object),
        [regions.area_m2, regions.mean_prob, regions.max_prob], ["area_m2", "mean_prob", "max_prob"],
        layer=POLYGON_LAYER, driver="GeoJSON" if geojson else "GPKG", geometry_type="Polygon",
        crs=georef.crs.to_wkt(), layer_options={"RFC7946": "YES"} if geojson else None,
    )


@contextmanager
def staged_outputs(*targets: Path) -> Iterator[tuple[Path, ...]]:
    """Paths bearing the targets' own names (drivers see the right extension) in hidden folders next
    to them; all are moved onto the targets (`core.io.atomic_paths`) only if the block succeeds."""
    with atomic_paths(*targets) as partials:
        folders = [Path(tempfile.mkdtemp(prefix=f".{t.name}.staging-", dir=t.parent)) for t in targets]
        try:
            staged = tuple(folder / target.name for folder, target in zip(folders, targets))
            yield staged
            for path, partial in zip(staged, partials):
                os.replace(path, partial)
        finally:
            for folder in folders:
                shutil.rmtree(folder, ignore_errors=True)


def write_map_outputs(
    probability: np.ndarray, georef: Georef, threshold: float, out: Path, polygons: Path, tags: dict[str, str]
) -> int:
    """The COG at ``out`` and the polygons at ``polygons``, together or not at all; returns the polygon count."""
    regions = find_regions(probability, threshold, georef)
    with staged_outputs(out, polygons) as (cog, vectors):
        write_cog(cog, probability, georef, tags)
        write_polygons(vectors, regions, georef)
    return len(regions)
