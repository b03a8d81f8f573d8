"""Georeferenced rasters and polygons: the pieces the scene files and the maps share.

- ``Georef``: a raster's CRS and affine transform.
- ``pixel_areas_m2``: the ground area of pixels (projected CRSs through their linear unit; a
  geographic CRS through each pixel's area on a sphere of radius 6,371,008.8 m).
- ``region_polygons``: the 4-connected regions of a label raster traced along pixel edges
  (`rasterio.features.shapes`), one shapely polygon per label.
- ``write_features``: polygons and their attribute columns as a GeoPackage (the raster's CRS) or
  GeoJSON (reprojected to WGS 84 by GDAL, as RFC 7946 requires). The GeoPackage's
  ``last_change`` stamp is pinned (``SOURCE_DATE_EPOCH`` when set, else the Unix epoch), so the
  same polygons give the same bytes and DVC sees an unchanged output as unchanged.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landslide_dvc.core.errors import DataError

POLYGON_LAYER = "landslides"
EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)


@dataclass(frozen=True)
class Georef:
    """Where a raster lies: its CRS (a rasterio CRS) and affine transform."""

    crs: Any
    transform: Any


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


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels (H, W) int32 of the 4-connected regions of a boolean ``mask`` (0: none), and their count."""
    from scipy import ndimage

    labels, count = ndimage.label(mask, structure=ndimage.generate_binary_structure(2, 1))
    return labels.astype(np.int32), int(count)


def region_polygons(labels: np.ndarray, count: int, georef: Georef) -> list[Any]:
    """One shapely polygon per label 1..count, traced along pixel edges in the raster's CRS."""
    from rasterio.features import shapes
    from shapely.geometry import shape

    geometries: list[Any] = [None] * count
    for geometry, value in shapes(labels, mask=labels > 0, connectivity=4, transform=georef.transform):
        geometries[int(value) - 1] = shape(geometry)
    return geometries


def region_areas_m2(labels: np.ndarray, count: int, georef: Georef) -> np.ndarray:
    """Ground area (m^2, float64) of each label 1..count."""
    rows, cols = np.nonzero(labels)
    return np.bincount(labels[rows, cols], weights=pixel_areas_m2(rows, cols, georef), minlength=count + 1)[1:]


def _gpkg_timestamp() -> str:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(epoch))


@contextmanager
def _pinned_gpkg_date() -> Iterator[None]:
    import pyogrio

    saved = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": _gpkg_timestamp()})
    try:
        yield
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": saved})


def write_features(
    path: Path, geometries: Sequence[Any], columns: dict[str, np.ndarray], crs: Any, *, layer: str = POLYGON_LAYER
) -> None:
    """Polygons with attribute ``columns`` as a GeoPackage (``crs``) or a .geojson (WGS 84, RFC 7946)."""
    import shapely
    from pyogrio.raw import write

    geojson = path.suffix.lower() == ".geojson"
    with _pinned_gpkg_date():
        write(
            path, np.array([shapely.to_wkb(g) for g in geometries], dtype=object),
            list(columns.values()), list(columns), layer=layer, driver="GeoJSON" if geojson else "GPKG",
            geometry_type="Polygon", crs=crs.to_wkt(), layer_options={"RFC7946": "YES"} if geojson else None,
        )


def read_features(path: Path, columns: Sequence[str], *, layer: str = POLYGON_LAYER) -> tuple[list[Any], dict[str, np.ndarray], Any]:
    """Polygons, the named attribute columns and the CRS (WKT) of a layer written by ``write_features``."""
    import shapely
    from pyogrio.errors import DataLayerError, DataSourceError
    from pyogrio.raw import read

    try:
        meta, _, wkb, fields = read(path, layer=layer, columns=list(columns))
    except (DataSourceError, DataLayerError) as exc:
        raise DataError(f"{path}: cannot read layer {layer!r} ({str(exc).splitlines()[0]}); rerun the stage that writes it") from None
    names = [str(n) for n in meta["fields"]]
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(f"{path}: layer {layer!r} lacks the column(s) {', '.join(missing)}; rerun the stage that writes it")
    geometries = list(shapely.from_wkb(wkb)) if wkb is not None else []
    return geometries, {n: np.asarray(v) for n, v in zip(names, fields)}, meta["crs"]


def footprint(crs: Any, transform: Any, height: int, width: int) -> tuple[dict[str, Any], list[float]]:
    """The grid's outline as a WGS 84 polygon and its bbox: the geometry of the STAC Items of maps, stacked scenes
    and the demo's products (densified edges, so a projected grid's sides stay true)."""
    from rasterio.warp import transform_bounds

    left, top = transform.c, transform.f
    right, bottom = left + width * transform.a, top + height * transform.e
    west, south, east, north = transform_bounds(crs, "EPSG:4326", min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    return {"type": "Polygon", "coordinates": [ring]}, [west, south, east, north]


__all__ = [
    "EARTH_RADIUS_M",
    "POLYGON_LAYER",
    "Georef",
    "footprint",
    "label_regions",
    "pixel_areas_m2",
    "read_features",
    "region_areas_m2",
    "region_polygons",
    "write_features",
]
