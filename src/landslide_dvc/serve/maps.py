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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.geo import (
    Georef,
    label_regions,
    region_areas_m2,
    region_polygons,
    write_features,
)
from landslide_dvc.core.io import atomic_paths

POLYGON_SUFFIXES = (".gpkg", ".geojson")
COG_BLOCK = 256


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


def find_regions(probability: np.ndarray, threshold: float, georef: Georef) -> Regions:
    """The polygons of the regions at or above ``threshold``, with area and mean and max probability."""
    labels, count = label_regions(np.nan_to_num(probability, nan=-np.inf) >= threshold)
    rows, cols = np.nonzero(labels)
    ids = labels[rows, cols]
    values = probability[rows, cols].astype(np.float64)
    n_pixels = np.bincount(ids, minlength=count + 1)[1:]
    mean = np.bincount(ids, weights=values, minlength=count + 1)[1:] / np.maximum(n_pixels, 1)
    peak = np.full(count + 1, -np.inf)
    np.maximum.at(peak, ids, values)
    return Regions(region_polygons(labels, count, georef), region_areas_m2(labels, count, georef), mean, peak[1:])


def write_polygons(path: Path, regions: Regions, georef: Georef) -> None:
    """The regions as a GeoPackage (the scene's CRS) or GeoJSON (WGS 84), with their attributes."""
    columns = {"area_m2": regions.area_m2, "mean_prob": regions.mean_prob, "max_prob": regions.max_prob}
    write_features(path, regions.geometries, columns, georef.crs)


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


@dataclass(frozen=True)
class MapFiles:
    """Where one map's outputs go. Every output of a map is a field here and a writer in ``MAP_WRITERS``:
    a new output (a STAC Item, say) is one field and one writer, and every caller (predict, a region's
    scenes and their manifests, map_scene) writes, checks and lists it through this object."""

    cog: Path  # probability Cloud Optimized GeoTIFF
    polygons: Path  # .gpkg (the scene's CRS) or .geojson (WGS 84)

    @classmethod
    def in_folder(cls, folder: Path, stem: str) -> MapFiles:
        """A region's outputs of the scene ``stem``: ``folder/<stem>.tif`` and ``.gpkg``."""
        return cls(cog=folder / f"{stem}.tif", polygons=folder / f"{stem}.gpkg")

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))

    def check(self) -> None:
        """Refuse, before any work, paths the writers cannot write as asked."""
        check_polygons_path(self.polygons)


@dataclass
class SceneMap:
    """A scored scene, ready to be written: the probability on the scene's grid, its threshold and the COG's tags."""

    probability: np.ndarray  # (H, W) float32, NaN where no scored window covers the pixel
    georef: Georef
    threshold: float
    tags: dict[str, str]

    def regions(self) -> Regions:
        return find_regions(self.probability, self.threshold, self.georef)


def _write_cog_output(path: Path, scene_map: SceneMap, regions: Regions) -> None:
    write_cog(path, scene_map.probability, scene_map.georef, scene_map.tags)


def _write_polygons_output(path: Path, scene_map: SceneMap, regions: Regions) -> None:
    write_polygons(path, regions, scene_map.georef)


MAP_WRITERS: dict[str, Callable[[Path, SceneMap, Regions], None]] = {
    "cog": _write_cog_output,
    "polygons": _write_polygons_output,
}


def write_map_outputs(scene_map: SceneMap, files: MapFiles) -> int:
    """Every output of ``files``, together or not at all; returns the polygon count."""
    regions = scene_map.regions()
    names = [f.name for f in fields(files)]
    with staged_outputs(*files.paths) as staged:
        for name, path in zip(names, staged):
            MAP_WRITERS[name](path, scene_map, regions)
    return len(regions)
