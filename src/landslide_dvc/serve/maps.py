"""The outputs of a scored scene, as GIS users open them: a Cloud Optimized GeoTIFF and polygons.

- **Probability map**: GDAL's COG driver (through rasterio): float32, tiled 256 x 256,
  DEFLATE with the floating-point predictor, average-resampled overviews down to at most 256 px
  (at least one level), nodata NaN (pixels no scored window covers, the scene's own no-data
  among them), the scene's CRS and transform. Band 1 is the landslide probability; band 2 its
  uncertainty, the standard deviation of the votes behind each pixel (`landslide_dvc.serve.blend`).
- **Polygons**: the connected regions (4-connectivity) of pixels at or above the threshold (under
  the bundle's mapping rules, where it has them: slope limit, hole filling, minimum mapping unit;
  `landslide_dvc.core.mapping_rules`),
  traced along pixel edges (`rasterio.features.shapes`), with ``area_m2`` (pixel count x pixel
  area; on a geographic CRS each pixel's area on a sphere of radius 6,371,008.8 m), ``mean_prob``,
  ``max_prob`` and ``mean_uncertainty`` (the mean of band 2 over the polygon's pixels); optionally smoothed
  (``--smooth``: Chaikin's corner cutting, `landslide_dvc.core.terrain`), their areas still the pixel counts'.
  A `.gpkg` (layer ``landslides``) keeps the scene's CRS; a `.geojson` is
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
    pixel_areas_m2,
    region_areas_m2,
    region_polygons,
    write_features,
)
from landslide_dvc.core.io import atomic_paths
from landslide_dvc.core.mapping_rules import MappingRules, landslide_mask
from landslide_dvc.core.terrain import smooth_outline
from landslide_dvc.serve.stac import MapSource, item_path, map_item, write_json

POLYGON_SUFFIXES = (".gpkg", ".geojson")
COG_BLOCK = 256


@dataclass
class Regions:
    """Connected regions at or above a threshold, one row per region."""

    geometries: list[Any]  # shapely Polygons in the map's CRS
    area_m2: np.ndarray  # float64
    mean_prob: np.ndarray  # float64
    max_prob: np.ndarray  # float64
    mean_uncertainty: np.ndarray  # float64: the mean of the uncertainty band over the region's pixels (NaN without it)

    def __len__(self) -> int:
        return len(self.geometries)


def check_polygons_path(path: Path) -> None:
    if path.suffix.lower() not in POLYGON_SUFFIXES:
        raise DataError(f"--polygons {path} must end in .gpkg (GeoPackage, the scene's CRS) or .geojson (WGS 84)")


def overview_count(height: int, width: int, smallest: int = COG_BLOCK) -> int:
    """Halvings until the larger side is at most ``smallest`` px; at least one."""
    return max(1, math.ceil(math.log2(max(height, width) / smallest)))


PROBABILITY_BAND = "landslide probability"
UNCERTAINTY_BAND = "uncertainty (standard deviation of the votes)"


def write_cog(
    path: Path, probability: np.ndarray, georef: Georef, tags: dict[str, str], uncertainty: np.ndarray | None = None
) -> None:
    """``probability`` (H, W) (and ``uncertainty``, band 2) as a float32 Cloud Optimized GeoTIFF, NaN as nodata."""
    bands = [(probability, PROBABILITY_BAND)] + ([(uncertainty, UNCERTAINTY_BAND)] if uncertainty is not None else [])
    write_bands_cog(path, bands, georef, tags)


def write_bands_cog(path: Path, bands: list[tuple[np.ndarray, str]], georef: Georef, tags: dict[str, str]) -> None:
    """Named float32 bands (H, W) as a Cloud Optimized GeoTIFF (GDAL's COG driver), NaN as nodata: the one
    COG writer of the package (maps, and the scenes `stack` builds)."""
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy

    height, width = bands[0][0].shape
    profile = {
        "driver": "GTiff", "width": width, "height": height, "count": len(bands), "dtype": "float32",
        "crs": georef.crs, "transform": georef.transform, "nodata": float("nan"),
    }
    with MemoryFile() as memory, memory.open(**profile) as staged:
        for index, (values, description) in enumerate(bands, start=1):
            staged.write(values.astype(np.float32, copy=False), index)
            staged.set_band_description(index, description)
        staged.update_tags(**tags)
        copy(
            staged, path, driver="COG", BLOCKSIZE=COG_BLOCK, COMPRESS="DEFLATE", PREDICTOR="YES",
            OVERVIEWS="AUTO", OVERVIEW_COUNT=overview_count(height, width), OVERVIEW_RESAMPLING="AVERAGE",
            BIGTIFF="IF_SAFER",
        )


def find_regions(
    probability: np.ndarray, threshold: float, georef: Georef, uncertainty: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> Regions:
    """The polygons of the regions at or above ``threshold`` (or of ``mask``, the mapping rules' landslide
    pixels), with area, mean and max probability, mean uncertainty."""
    if mask is None:
        mask = np.nan_to_num(probability, nan=-np.inf) >= threshold
    labels, count = label_regions(mask)
    rows, cols = np.nonzero(labels)
    ids = labels[rows, cols]
    values = probability[rows, cols].astype(np.float64)
    n_pixels = np.maximum(np.bincount(ids, minlength=count + 1)[1:], 1)
    mean = np.bincount(ids, weights=values, minlength=count + 1)[1:] / n_pixels
    peak = np.full(count + 1, -np.inf)
    np.maximum.at(peak, ids, values)
    spread = (
        np.bincount(ids, weights=uncertainty[rows, cols].astype(np.float64), minlength=count + 1)[1:] / n_pixels
        if uncertainty is not None else np.full(count, np.nan)
    )
    return Regions(region_polygons(labels, count, georef), region_areas_m2(labels, count, georef), mean, peak[1:], spread)


def write_polygons(path: Path, regions: Regions, georef: Georef) -> None:
    """The regions as a GeoPackage (the scene's CRS) or GeoJSON (WGS 84), with their attributes."""
    columns = {
        "area_m2": regions.area_m2, "mean_prob": regions.mean_prob, "max_prob": regions.max_prob,
        "mean_uncertainty": regions.mean_uncertainty,
    }
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
    a new output is one field and one writer, and every caller (predict, a region's scenes and their
    manifests, map_scene) writes, checks and lists it through this object."""

    cog: Path  # probability Cloud Optimized GeoTIFF
    polygons: Path  # .gpkg (the scene's CRS) or .geojson (WGS 84)
    item: Path | None = None  # the map's STAC Item (`serve.stac`); written where the scene's dates are known

    @classmethod
    def beside(cls, cog: Path, polygons: Path) -> MapFiles:
        """A single scene's outputs: the COG and polygons asked for, and the Item next to the COG."""
        return cls(cog=cog, polygons=polygons, item=item_path(cog))

    @classmethod
    def in_folder(cls, folder: Path, stem: str) -> MapFiles:
        """A region's outputs of the scene ``stem``: ``folder/<stem>.tif``, ``.gpkg`` and ``.item.json``."""
        return cls.beside(folder / f"{stem}.tif", folder / f"{stem}.gpkg")

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(p for f in fields(self) if (p := getattr(self, f.name)) is not None)

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
    uncertainty: np.ndarray | None = None  # (H, W) float32, band 2 of the COG
    rules: MappingRules | None = None  # the mapping rules of the polygons (None: the threshold alone)
    slope: np.ndarray | None = None  # (H, W): the scene's slope band (or a DEM's slope), where the rules have a slope limit
    smooth: int = 0  # passes of Chaikin's corner cutting on the polygons' outlines (`core.terrain.smooth_outline`)
    source: MapSource | None = None  # the scene, its dates and the bundle, for the map's STAC Item

    def __post_init__(self) -> None:
        if self.rules is not None and self.rules.threshold != self.threshold:
            raise ValueError(f"the rules' threshold {self.rules.threshold} is not the map's {self.threshold}")

    def regions(self) -> Regions:
        """The polygons under the rules; areas stay the pixel counts' (the raster is the measurement), also when
        the outlines are smoothed."""
        mask = None
        if self.rules is not None:
            height, width = self.probability.shape
            pixel_area = float(pixel_areas_m2(np.array([height // 2]), np.array([width // 2]), self.georef)[0])
            mask = landslide_mask(self.probability, self.rules, pixel_area, self.slope)
        regions = find_regions(self.probability, self.threshold, self.georef, self.uncertainty, mask)
        if self.smooth:
            step = min(abs(self.georef.transform.a), abs(self.georef.transform.e))  # a pixel's side
            regions.geometries = [smooth_outline(g, self.smooth, step) for g in regions.geometries]
        return regions


@dataclass(frozen=True)
class Written:
    """The outputs being written: each field's final path and the staged path its bytes go to first."""

    final: dict[str, Path]
    staged: dict[str, Path]

    def pair(self, name: str) -> tuple[Path, Path]:
        return self.final[name], self.staged[name]


def _write_cog_output(written: Written, scene_map: SceneMap, regions: Regions) -> None:
    write_cog(written.staged["cog"], scene_map.probability, scene_map.georef, scene_map.tags, scene_map.uncertainty)


def _write_polygons_output(written: Written, scene_map: SceneMap, regions: Regions) -> None:
    write_polygons(written.staged["polygons"], regions, scene_map.georef)


def _write_item_output(written: Written, scene_map: SceneMap, regions: Regions) -> None:
    assert scene_map.source is not None
    item = map_item(written.final["item"], written.pair("cog"), written.pair("polygons"), scene_map, scene_map.source, len(regions))
    write_json(written.staged["item"], item)


def _has_dates(scene_map: SceneMap) -> bool:
    return scene_map.source is not None and scene_map.source.dates is not None


@dataclass(frozen=True)
class MapWriter:
    write: Callable[[Written, SceneMap, Regions], None]
    applies: Callable[[SceneMap], bool] = lambda scene_map: True


# In the order they are written: a later writer reads the earlier ones' staged bytes (the Item's checksums).
MAP_WRITERS: dict[str, MapWriter] = {
    "cog": MapWriter(_write_cog_output),
    "polygons": MapWriter(_write_polygons_output),
    "item": MapWriter(_write_item_output, _has_dates),
}


def outputs_written(scene_map: SceneMap, files: MapFiles) -> list[str]:
    """The fields of ``files`` that ``scene_map`` writes (an Item only where the scene's dates are known)."""
    return [name for name in MAP_WRITERS if getattr(files, name) is not None and MAP_WRITERS[name].applies(scene_map)]


def write_map_outputs(scene_map: SceneMap, files: MapFiles) -> int:
    """Every output of ``files`` that applies, together or not at all; returns the polygon count."""
    regions = scene_map.regions()
    names = outputs_written(scene_map, files)
    final = {name: getattr(files, name) for name in names}
    with staged_outputs(*final.values()) as staged:
        written = Written(final, dict(zip(names, staged)))
        for name in names:
            MAP_WRITERS[name].write(written, scene_map, regions)
    return len(regions)
