"""The STAC records predict writes (`serve.stac`): a map's Item read back by pystac with its extensions,
checksums and links; where a map's dates come from; no Item without dates. The region's Collection is
checked with the committed bundle in tests/test_predict_region.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.io import file_sha256
from landslide_dvc.serve.maps import Georef, MapFiles, SceneMap, write_map_outputs
from landslide_dvc.serve.stac import Dates, MapSource, item_path, parse_datetime, region_collection, scene_dates

UTM = Georef(CRS.from_epsg(32633), from_origin(500000.0, 4100000.0, 10.0, 10.0))


def probability_map() -> tuple[np.ndarray, np.ndarray]:
    probability = np.zeros((80, 90), np.float32)
    probability[10:30, 10:40] = 0.9
    probability[50:60, 60:70] = 0.7
    probability[:, 85:] = np.nan
    return probability, np.where(np.isnan(probability), np.nan, 0.05).astype(np.float32)


def write_dated_map(folder: Path, dates: Dates | None, name: str = "map") -> MapFiles:
    folder.mkdir(parents=True, exist_ok=True)
    scene = folder.parent / "scene.tif"
    bundle = folder.parent / "bundle"
    probability, uncertainty = probability_map()
    source = MapSource(scene, dates, bundle)
    tags = {"LANDSLIDE_BUNDLE_KIND": "classifier", "LANDSLIDE_RULES": "polygons: probability >= 0.5"}
    files = MapFiles.beside(folder / f"{name}.tif", folder / f"{name}.gpkg")
    write_map_outputs(SceneMap(probability, UTM, 0.5, tags, uncertainty, source=source), files)
    return files


def test_a_maps_item_reads_back_with_its_extensions_checksums_and_links(tmp_path: Path) -> None:
    files = write_dated_map(tmp_path / "maps", Dates("2024-06-01T10:30:00Z"))
    assert files.item == tmp_path / "maps" / "map.item.json" and files.item.is_file()
    item = pystac.Item.from_file(str(files.item))
    assert item.id == "map" and item.datetime.isoformat() == "2024-06-01T10:30:00+00:00"
    schemas = " ".join(item.stac_extensions)
    for name in ("projection", "raster", "classification", "file"):
        assert f"stac-extensions.github.io/{name}/" in schemas
    assert item.properties["proj:code"] == "EPSG:32633" and item.properties["proj:shape"] == [80, 90]
    assert item.properties["proj:transform"] == [10.0, 0.0, 500000.0, 0.0, -10.0, 4100000.0]
    assert item.properties["landslide:polygons"] == 2 and item.properties["landslide:threshold"] == 0.5
    west, south, east, north = item.bbox
    assert 14.99 < west < east < 15.02 and 37.03 < south < north < 37.05  # the UTM grid's place in WGS 84
    for key, path in (("probability", files.cog), ("polygons", files.polygons)):
        asset = item.assets[key].to_dict()
        assert (files.item.parent / asset["href"]).resolve() == path.resolve()
        assert asset["file:checksum"] == "1220" + file_sha256(path) and asset["file:size"] == path.stat().st_size
    band = item.assets["probability"].to_dict()["raster:bands"]
    assert [b["data_type"] for b in band] == ["float32", "float32"] and band[0]["nodata"] == "nan"
    classes = item.assets["probability"].to_dict()["classification:classes"]
    assert [(c["value"], c["name"]) for c in classes] == [(0, "not_landslide"), (1, "landslide")]
    links = {(link.rel, link.href) for link in item.links}
    assert ("derived_from", "../scene.tif") in links and ("via", "../bundle/manifest.json") in links
    with rasterio.open(files.cog) as src:
        assert src.count == 2  # the Item describes the COG as written


def test_a_map_without_dates_gets_no_item_and_a_stale_name_is_never_written(tmp_path: Path) -> None:
    files = write_dated_map(tmp_path / "maps", None)
    assert files.cog.is_file() and files.polygons.is_file() and not files.item.exists()
    with_item = write_dated_map(tmp_path / "dated", Dates(None, "2024-05-01T00:00:00Z", "2024-06-01T00:00:00Z"))
    record = json.loads(with_item.item.read_text())
    assert record["properties"]["datetime"] is None
    assert record["properties"]["start_datetime"] == "2024-05-01T00:00:00Z"


def test_the_dates_come_from_the_option_the_scenes_item_or_its_tiff_tag(tmp_path: Path) -> None:
    scene = tmp_path / "scene.tif"
    assert scene_dates(scene, {}) is None
    assert scene_dates(scene, {"TIFFTAG_DATETIME": "2023:09:08 10:00:00"}) == Dates("2023-09-08T10:00:00Z")
    item_path(scene).write_text(json.dumps({"type": "Feature", "properties": {
        "datetime": "2023-09-10T00:00:00Z", "start_datetime": "2023-08-01T00:00:00Z", "end_datetime": "2023-09-10T00:00:00Z"}}))
    assert scene_dates(scene, {"TIFFTAG_DATETIME": "2023:09:08 10:00:00"}) == Dates(
        "2023-09-10T00:00:00Z", "2023-08-01T00:00:00Z", "2023-09-10T00:00:00Z")
    assert scene_dates(scene, {}, "2024-01-02") == Dates("2024-01-02T00:00:00Z")
    assert parse_datetime("2024-01-02T03:04:05+02:00", "--datetime") == "2024-01-02T01:04:05Z"
    with pytest.raises(DataError, match=r"--datetime '2024-13-40' is not a date"):
        scene_dates(scene, {}, "2024-13-40")
    item_path(scene).write_text("not json")
    with pytest.raises(DataError, match=r"scene\.item\.json is not a STAC Item"):
        scene_dates(scene, {})


def test_a_collection_spans_its_items_and_reads_back(tmp_path: Path) -> None:
    first = write_dated_map(tmp_path / "region", Dates("2024-06-01T00:00:00Z"), "a")
    second = write_dated_map(tmp_path / "region", Dates("2024-06-09T00:00:00Z"), "b")
    record = region_collection(tmp_path / "region", [first.item, second.item])
    (tmp_path / "region" / "collection.json").write_text(json.dumps(record))
    collection = pystac.Collection.from_file(str(tmp_path / "region" / "collection.json"))
    interval = collection.extent.temporal.intervals[0]
    assert [t.isoformat()[:10] for t in interval] == ["2024-06-01", "2024-06-09"]
    assert [link.href for link in collection.links if link.rel == "item"] == ["a.item.json", "b.item.json"]
    assert collection.extent.spatial.bboxes[0] == pystac.Item.from_file(str(first.item)).bbox
