"""STAC records of what the package writes: the Items of maps and stacked scenes, and a region's Collection.

Every record is built with `pystac` and its extension classes, so catalogues (and `pystac.read_file`)
take them as they are:

- **a map's Item** (`<map stem>.item.json` next to the COG): footprint and bounding box in WGS 84,
  the acquisition dates of the scene it maps, the `proj` extension (the map's CRS, shape and
  transform), the `raster` extension (two float32 bands, NaN no-data: probability and its
  uncertainty), the `classification` extension on band 1 (landslide where the probability is at or
  above the bundle's threshold, not landslide below it), and the `file` extension (sha256 multihash
  and size) on the COG and the polygons assets; links to the scene (its own Item where `stack` made
  one, ``derived_from``) and to the bundle's manifest (``via``).
- **the dates**: STAC needs an acquisition date or range. A map takes its scene's: the scene's own
  Item (`<scene stem>.item.json`, as `stack` writes it), else the GeoTIFF's ``TIFFTAG_DATETIME``,
  else predict's ``--datetime``. A scene that states none gets no Item (the summary says so),
  since a made-up date would put the map at the wrong place in every catalogue search.
- **a region's Collection** (`collection.json` in the output folder): the scenes' Items as its items,
  with their joint spatial and temporal extent.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.geo import footprint
from landslide_dvc.core.io import file_sha256

ITEM_SUFFIX = ".item.json"
COLLECTION_FILE = "collection.json"
MAP_PROPERTY = "landslide:map"  # marks the Items predict writes (a region recognises its own files by it)
POLYGON_MEDIA = {".gpkg": "application/geopackage+sqlite3", ".geojson": "application/geo+json"}


def item_path(path: Path) -> Path:
    """Where the Item of the file ``path`` goes: ``<stem>.item.json`` beside it."""
    return path.with_name(path.stem + ITEM_SUFFIX)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def parse_datetime(text: str, source: str) -> str:
    """An ISO date or date-time (``2024-06-01``, ``2024-06-01T10:30:00Z``) as a UTC STAC date-time string."""
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"{source} {text!r} is not a date; give YYYY-MM-DD or an ISO date-time") from None
    return _iso(value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc))


@dataclass(frozen=True)
class Dates:
    """A STAC acquisition date, or a range (``datetime`` None with ``start`` and ``end``)."""

    datetime: str | None
    start: str | None = None
    end: str | None = None

    def properties(self) -> dict[str, Any]:
        extra = {k: v for k, v in (("start_datetime", self.start), ("end_datetime", self.end)) if v is not None}
        return {"datetime": self.datetime, **extra}

    def moment(self) -> dt.datetime | None:
        return None if self.datetime is None else dt.datetime.fromisoformat(self.datetime.replace("Z", "+00:00"))

    def bounds(self) -> tuple[dt.datetime, dt.datetime]:
        first, last = self.start or self.datetime, self.end or self.datetime
        assert first is not None and last is not None
        return (dt.datetime.fromisoformat(first.replace("Z", "+00:00")), dt.datetime.fromisoformat(last.replace("Z", "+00:00")))


def scene_dates(scene: Path, tags: dict[str, str], given: str | None = None) -> Dates | None:
    """The acquisition dates of a scene: ``given`` (predict's --datetime), its Item, its TIFF tag, or None."""
    if given is not None:
        return Dates(parse_datetime(given, "--datetime"))
    own_item = item_path(scene)
    if own_item.is_file():
        try:
            properties = json.loads(own_item.read_text())["properties"]
        except (OSError, ValueError, KeyError, TypeError):
            raise DataError(f"{own_item} is not a STAC Item; fix or remove it, or give --datetime") from None
        dates = Dates(properties.get("datetime"), properties.get("start_datetime"), properties.get("end_datetime"))
        if dates.datetime is not None or (dates.start and dates.end):
            return dates
    stamp = tags.get("TIFFTAG_DATETIME")  # "YYYY:MM:DD HH:MM:SS", the TIFF standard's form
    if stamp:
        try:
            value = dt.datetime.strptime(stamp.strip(), "%Y:%m:%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
        except ValueError:
            return None
        return Dates(_iso(value))
    return None


def add_projection(item: Any, crs: Any, transform: Any, height: int, width: int) -> None:
    from pystac.extensions.projection import ProjectionExtension

    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = crs.to_epsg()
    if epsg is not None:
        proj.code = f"EPSG:{epsg}"
    else:
        proj.wkt2 = crs.to_wkt()
    proj.shape, proj.transform = [height, width], list(transform)[:6]


def add_file(asset: Any, written: Path) -> None:
    """The ``file`` extension: sha256 multihash (``1220`` + hex digest) and size of the bytes at ``written``."""
    from pystac.extensions.file import FileExtension

    ext = FileExtension.ext(asset, add_if_missing=True)
    ext.checksum = "1220" + file_sha256(written)
    ext.size = written.stat().st_size


def relative_href(target: Path, item_file: Path) -> str:
    return Path(os.path.relpath(Path(target).resolve(), Path(item_file).resolve().parent)).as_posix()


@dataclass(frozen=True)
class MapSource:
    """What a map came from, for its Item: the scene, its dates and the bundle."""

    scene: Path
    dates: Dates | None
    bundle: Path | None = None  # the bundle folder (its manifest is linked)


def map_item(
    item_file: Path, cog: tuple[Path, Path], polygons: tuple[Path, Path], scene_map: Any, source: MapSource, n_polygons: int,
) -> dict[str, Any]:
    """The Item of a map (``cog``, ``polygons``: (final path, the path whose bytes are written there))."""
    import pystac
    from pystac.extensions.classification import Classification, ClassificationExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    from landslide_dvc.serve.maps import PROBABILITY_BAND, UNCERTAINTY_BAND

    assert source.dates is not None
    height, width = scene_map.probability.shape
    crs, transform = scene_map.georef.crs, scene_map.georef.transform
    geometry, bbox = footprint(crs, transform, height, width)
    rules = scene_map.tags.get("LANDSLIDE_RULES", f"polygons: probability >= {scene_map.threshold:g}")
    item = pystac.Item(
        id=item_file.name[: -len(ITEM_SUFFIX)], geometry=geometry, bbox=bbox, datetime=source.dates.moment(),
        properties={
            **{k: v for k, v in source.dates.properties().items() if k != "datetime"}, MAP_PROPERTY: True,
            "title": f"landslide map of {source.scene.name}",
            "description": f"landslide probability and polygons from landslide-dvc predict; {rules}",
            "landslide:threshold": scene_map.threshold, "landslide:polygons": n_polygons,
            "landslide:bundle_kind": scene_map.tags.get("LANDSLIDE_BUNDLE_KIND"),
        },
    )
    probability = pystac.Asset(href=relative_href(cog[0], item_file), media_type=pystac.MediaType.COG, roles=["data"],
                               title="landslide probability and its uncertainty")
    item.add_asset("probability", probability)
    outlines = pystac.Asset(href=relative_href(polygons[0], item_file), media_type=POLYGON_MEDIA[polygons[0].suffix.lower()],
                            roles=["data"], title="landslide polygons")
    item.add_asset("polygons", outlines)
    add_projection(item, crs, transform, height, width)
    bands = [RasterBand.create(data_type=DataType.FLOAT32, nodata="nan", unit="1")]
    if scene_map.uncertainty is not None:
        bands.append(RasterBand.create(data_type=DataType.FLOAT32, nodata="nan", unit="1"))
    for band, name in zip(bands, (PROBABILITY_BAND, UNCERTAINTY_BAND)):
        band.properties["description"] = name  # STAC 1.1's common band field
    RasterExtension.ext(probability, add_if_missing=True).bands = bands
    classes = ClassificationExtension.ext(probability, add_if_missing=True)
    classes.classes = [
        Classification.create(0, name="not_landslide", description=f"probability below {scene_map.threshold:g}"),
        Classification.create(1, name="landslide", description=f"probability at or above {scene_map.threshold:g}"),
    ]
    add_file(probability, cog[1])
    add_file(outlines, polygons[1])
    scene_item = item_path(source.scene)
    if scene_item.is_file():
        item.add_link(pystac.Link("derived_from", relative_href(scene_item, item_file), media_type=pystac.MediaType.JSON,
                                  title="the scene's Item"))
    item.add_link(pystac.Link("derived_from", relative_href(source.scene, item_file), media_type=pystac.MediaType.GEOTIFF,
                              title="the scene"))
    if source.bundle is not None:
        item.add_link(pystac.Link("via", relative_href(source.bundle / "manifest.json", item_file),
                                  media_type=pystac.MediaType.JSON, title="the model bundle's manifest"))
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def write_json(path: Path, record: dict[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=2) + "\n")


def region_collection(out_dir: Path, items: Sequence[Path]) -> dict[str, Any]:
    """A Collection of the region's map Items, with their joint extent."""
    import pystac

    records = [json.loads(p.read_text()) for p in items]
    boxes = [r["bbox"] for r in records]
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    times = [Dates(r["properties"].get("datetime"), r["properties"].get("start_datetime"),
                   r["properties"].get("end_datetime")).bounds() for r in records]
    collection = pystac.Collection(
        id=out_dir.resolve().name, description=f"landslide maps of {len(records)} scenes by landslide-dvc predict",
        extent=pystac.Extent(pystac.SpatialExtent([bbox]),
                             pystac.TemporalExtent([[min(t[0] for t in times), max(t[1] for t in times)]])),
        license="other",
    )
    for path, record in zip(items, records):
        collection.add_link(pystac.Link("item", relative_href(path, out_dir / COLLECTION_FILE),
                                        media_type=pystac.MediaType.GEOJSON, title=record["id"]))
    return collection.to_dict(include_self_link=False, transform_hrefs=False)


__all__ = [
    "COLLECTION_FILE", "Dates", "ITEM_SUFFIX", "MapSource", "add_file", "add_projection", "item_path",
    "map_item", "parse_datetime", "region_collection", "scene_dates", "write_json",
]
