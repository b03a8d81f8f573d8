"""The scene layout: a GeoTIFF scene and its known landslides (``data/scene/``, ``l4s/data/scene/``).

- ``scene.tif``: float32, one band per raw band in the dataset's order (described by name), UTM,
  tiled 256 x 256, DEFLATE; no-data pixels hold ``SCENE_NODATA`` in every band (declared).
- ``truth.tif``: uint8 on the same grid: 1 landslide, 0 not, 255 no data (declared).
- ``truth.gpkg``: the landslides as polygons (layer ``landslides``; the 4-connected regions of
  truth == 1, traced along pixel edges, with ``area_m2``), in the scene's CRS.

Every file is written by ``write_scene_folder`` and read back by ``read_truth``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.geo import (
    Georef,
    label_regions,
    read_features,
    region_areas_m2,
    region_polygons,
    write_features,
)

SCENE_FILE = "scene.tif"
TRUTH_FILE = "truth.tif"
TRUTH_POLYGONS = "truth.gpkg"
SCENE_NODATA = -9999.0  # far below every band's range (SAR floor -65.7 dB; rescaled bands ~ -5..20)
TRUTH_NODATA = 255
_BLOCK = 256


def utm_georef(epsg: int, origin_m: tuple[float, float] | list[float], pixel_m: float) -> Georef:
    """A north-up grid of ``pixel_m`` pixels whose upper-left corner is at ``origin_m`` (easting, northing)."""
    from affine import Affine
    from rasterio.crs import CRS

    return Georef(CRS.from_epsg(epsg), Affine(pixel_m, 0.0, float(origin_m[0]), 0.0, -pixel_m, float(origin_m[1])))


def _profile(georef: Georef, height: int, width: int, count: int, dtype: str, nodata: float) -> dict[str, Any]:
    tiled = height >= _BLOCK and width >= _BLOCK
    return {
        "driver": "GTiff", "height": height, "width": width, "count": count, "dtype": dtype,
        "crs": georef.crs, "transform": georef.transform, "nodata": nodata, "compress": "deflate",
        "predictor": 3 if dtype == "float32" else 2, "tiled": tiled,
        **({"blockxsize": _BLOCK, "blockysize": _BLOCK} if tiled else {}),
    }


def write_scene_folder(
    folder: Path, bands: np.ndarray, band_names: list[str], scars: np.ndarray, valid: np.ndarray, georef: Georef,
    tags: dict[str, str],
) -> int:
    """Write scene.tif, truth.tif and truth.gpkg into ``folder`` (existing); returns the truth polygon count."""
    import rasterio

    count, height, width = bands.shape
    raster = np.where(valid[None], bands, np.float32(SCENE_NODATA)).astype(np.float32)
    with rasterio.open(folder / SCENE_FILE, "w", **_profile(georef, height, width, count, "float32", SCENE_NODATA)) as dst:
        dst.write(raster)
        for i, name in enumerate(band_names, start=1):
            dst.set_band_description(i, name)
        dst.update_tags(**tags)
    truth = np.where(valid, scars.astype(np.uint8), np.uint8(TRUTH_NODATA)).astype(np.uint8)
    with rasterio.open(folder / TRUTH_FILE, "w", **_profile(georef, height, width, 1, "uint8", TRUTH_NODATA)) as dst:
        dst.write(truth, 1)
        dst.set_band_description(1, "landslide (1), not (0), no data (255)")
    labels, n = label_regions(truth == 1)
    write_features(folder / TRUTH_POLYGONS, region_polygons(labels, n, georef),
                   {"area_m2": region_areas_m2(labels, n, georef)}, georef.crs)
    return n


@dataclass
class Truth:
    """A scene's known landslides."""

    mask: np.ndarray  # (H, W) uint8: 1, 0, 255 (no data)
    georef: Georef
    polygons: list[Any]  # shapely polygons in the scene's CRS

    @property
    def valid(self) -> np.ndarray:
        return self.mask != TRUTH_NODATA


def read_truth(folder: Path) -> Truth:
    """truth.tif and truth.gpkg of a scene folder, checked to be the layout ``write_scene_folder`` writes."""
    import rasterio
    from rasterio.errors import RasterioIOError

    path = folder / TRUTH_FILE
    try:
        with rasterio.open(path) as src:
            if src.count != 1 or src.dtypes[0] != "uint8":
                raise DataError(f"{path} has {src.count} band(s) of {src.dtypes[0]}; the truth is one uint8 band (1 landslide, 0 not, 255 no data)")
            mask, georef = src.read(1), Georef(src.crs, src.transform)
    except RasterioIOError:
        raise DataError(f"{path} not found or not a GeoTIFF; rerun the stage that synthesizes the scene") from None
    unknown = np.setdiff1d(np.unique(mask), [0, 1, TRUTH_NODATA])
    if unknown.size:
        raise DataError(f"{path} holds the value {int(unknown[0])}; the truth holds only 1 (landslide), 0 (not) and 255 (no data)")
    polygons, _, _ = read_features(folder / TRUTH_POLYGONS, ["area_m2"])
    return Truth(mask, georef, polygons)


__all__ = [
    "SCENE_FILE", "SCENE_NODATA", "TRUTH_FILE", "TRUTH_NODATA", "TRUTH_POLYGONS",
    "Truth", "read_truth", "utm_georef", "write_scene_folder",
]
