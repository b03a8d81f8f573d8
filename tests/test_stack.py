"""`landslide-dvc stack`: product files and STAC Items in, the Zindi-band scene out.

Every product here is written by the test: Sentinel-2 bands as uint16 digital numbers (with and
without the baseline-04.00 offset, named as Earth Search and as Planetary Computer name them, and
as a SAFE folder), Sentinel-1 VV/VH in linear power from both orbits before and after the event.
The expected scene is computed by hand from the same numbers.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from landslide_dvc.cli import main as landslide
from landslide_dvc.core.bands import RAW_BANDS
from landslide_dvc.core.errors import LandslideError
from landslide_dvc.serve.stack import StackOptions, read_input, run_stack

CRS = "EPSG:32645"
SIZE = 40
TRANSFORM = from_origin(600000.0, 3100000.0, 10.0, 10.0)
EVENT = "2024-06-15"
EVENT_DATE = dt.date(2024, 6, 15)
RNG = np.random.default_rng(7)
REFLECTANCE = {band: RNG.uniform(0.02, 0.4, (SIZE, SIZE)) for band in ("red", "green", "blue", "nir")}
# Sentinel-1 backscatter in dB per (orbit, polarisation, date): what the linear files must give back
SAR_DB = {
    (orbit, pol, date): RNG.uniform(-25.0, -5.0, (SIZE, SIZE))
    for orbit in ("descending", "ascending") for pol in ("vv", "vh")
    for date in ("2024-05-01", "2024-05-13", "2024-05-25", "2024-06-20")
}


def write_band(path: Path, values: np.ndarray, dtype: str = "uint16", transform=TRANSFORM, crs: str = CRS, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver=extra.pop("driver", "GTiff"), width=values.shape[1], height=values.shape[0], count=1,
                       dtype=dtype, crs=crs, transform=transform, **extra) as dst:
        dst.write(values.astype(dtype), 1)
    return path


def s2_dn(offset: int) -> dict[str, np.ndarray]:
    """The digital numbers of the four bands for the same ground: reflectance x 10,000 - offset."""
    return {band: np.round(r * 10000.0) - offset for band, r in REFLECTANCE.items()}


def s2_item(folder: Path, name: str, date: str, *, style: str, offset: int, record: str) -> Path:
    """A Sentinel-2 L2A Item; ``style`` names its assets (earth-search: red; pc: B04); ``record`` how it states the offset."""
    keys = {"earth-search": {"red": "red", "green": "green", "blue": "blue", "nir": "nir"},
            "pc": {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08"}}[style]
    assets = {}
    for band, dn in s2_dn(-offset).items():  # DN = reflectance x 10,000 + 1000 where the product has the offset
        write_band(folder / f"{name}_{keys[band]}.tif", dn)
        asset: dict = {"href": f"{name}_{keys[band]}.tif", "type": "image/tiff; application=geotiff"}
        if record == "raster:bands":
            asset["raster:bands"] = [{"scale": 0.0001, "offset": -offset / 10000.0}]
        assets[keys[band]] = asset
    props = {"platform": "sentinel-2b", "constellation": "sentinel-2", "datetime": f"{date}T04:55:21Z"}
    if record == "baseline":
        props["s2:processing_baseline"] = "05.10" if offset else "02.12"
    item = {"type": "Feature", "stac_version": "1.0.0", "id": name, "properties": props, "assets": assets, "geometry": None}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(item))
    return path


def s1_item(folder: Path, orbit: str, date: str, *, unit: str = "linear", transform=TRANSFORM) -> Path:
    name = f"S1_{orbit}_{date}"
    assets = {}
    for pol in ("vv", "vh"):
        db = SAR_DB[(orbit, pol, date)]
        values = db if unit == "db" else 10.0 ** (db / 10.0)
        write_band(folder / f"{name}_{pol}.tif", values, dtype="float32", transform=transform)
        asset: dict = {"href": f"{name}_{pol}.tif"}
        if unit == "db":
            asset["raster:bands"] = [{"unit": "dB"}]
        assets[pol] = asset
    item = {"type": "Feature", "stac_version": "1.0.0", "id": name, "geometry": None, "assets": assets,
            "properties": {"platform": "sentinel-1a", "datetime": f"{date}T00:10:00Z", "sat:orbit_state": orbit}}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(item))
    return path


def sar_items(folder: Path, **kwargs) -> list[Path]:
    """Per orbit: three pre-event acquisitions (composited by their median) and one post-event."""
    return [s1_item(folder, orbit, date, **kwargs) for orbit in ("descending", "ascending")
            for date in ("2024-05-01", "2024-05-13", "2024-05-25", "2024-06-20")]


def expected_scene() -> np.ndarray:
    optical = [np.round(REFLECTANCE[b] * 10000.0) for b in ("red", "green", "blue", "nir")]
    sar = []
    for orbit in ("descending", "ascending"):
        post = {pol: SAR_DB[(orbit, pol, "2024-06-20")] for pol in ("vv", "vh")}
        pre = {pol: np.median([SAR_DB[(orbit, pol, d)] for d in ("2024-05-01", "2024-05-13", "2024-05-25")], axis=0)
               for pol in ("vv", "vh")}
        sar += [post["vv"], post["vh"], post["vv"] - pre["vv"], post["vh"] - pre["vh"]]
    return np.stack(optical + sar).astype(np.float32)


def read_scene(path: Path) -> tuple[np.ndarray, tuple]:
    with rasterio.open(path) as src:
        return src.read(), src.descriptions


@pytest.mark.parametrize(
    ("style", "record"), [("earth-search", "raster:bands"), ("pc", "baseline")],
)
def test_the_scene_has_the_zindi_bands_offsets_removed_and_sar_in_db(tmp_path: Path, style: str, record: str) -> None:
    inputs = [s2_item(tmp_path, "S2_post", "2024-06-18", style=style, offset=1000, record=record), *sar_items(tmp_path)]
    out = tmp_path / "out" / "scene.tif"
    line = run_stack(inputs, out, StackOptions(EVENT_DATE))
    scene, descriptions = read_scene(out)
    assert descriptions == RAW_BANDS
    np.testing.assert_allclose(scene, expected_scene(), rtol=0, atol=2e-4)  # float32 dB
    assert "9 products (6 pre-event, 3 post-event)" in line
    provenance = json.loads(out.with_suffix(".provenance.json").read_text())
    s2 = next(i for i in provenance["inputs"] if i["sensor"] == "sentinel-2")
    assert s2["role"] == "post" and all("1000" in note or "-0.1" in note for note in s2["offsets_removed"].values())
    assert all(len(f["sha256"]) == 64 for i in provenance["inputs"] for f in i["files"].values())
    assert provenance["grid"]["width"] == SIZE and provenance["grid"]["crs"] == CRS
    s1 = [i for i in provenance["inputs"] if i["sensor"] == "sentinel-1"]
    assert len(s1) == 8 and all(i["units"]["vv"].startswith("linear power -> dB") for i in s1)


def test_a_2019_and_a_2024_product_of_the_same_ground_give_the_same_numbers(tmp_path: Path) -> None:
    old = s2_item(tmp_path / "a", "S2_2019", "2024-06-18", style="pc", offset=0, record="baseline")
    new = s2_item(tmp_path / "b", "S2_2024", "2024-06-18", style="pc", offset=1000, record="baseline")
    sar_a, sar_b = sar_items(tmp_path / "a"), sar_items(tmp_path / "b")
    run_stack([old, *sar_a], tmp_path / "a.tif", StackOptions(EVENT_DATE))
    run_stack([new, *sar_b], tmp_path / "b.tif", StackOptions(EVENT_DATE))
    a, b = read_scene(tmp_path / "a.tif")[0], read_scene(tmp_path / "b.tif")[0]
    np.testing.assert_array_equal(a[:4], b[:4])  # the +1000 of baseline 04.00 removed exactly


def test_a_gdal_declared_offset_is_applied_once(tmp_path: Path) -> None:
    # gdal_translate from a 2022+ product: the band files declare offset -1000 themselves; the Item says nothing
    item = s2_item(tmp_path, "S2_gdal", "2024-06-18", style="earth-search", offset=1000, record="none")
    for band in ("red", "green", "blue", "nir"):
        with rasterio.open(tmp_path / f"S2_gdal_{band}.tif", "r+") as dst:
            dst.offsets = (-1000.0,)
    run_stack([item, *sar_items(tmp_path)], tmp_path / "s.tif", StackOptions(EVENT_DATE))
    np.testing.assert_array_equal(read_scene(tmp_path / "s.tif")[0][:4], expected_scene()[:4])


def test_a_safe_folder_reads_its_offsets_from_the_metadata_xml(tmp_path: Path) -> None:
    safe = tmp_path / "S2B_MSIL2A_20240618T045521_N0510_R119_T45RTL_20240618T071000.SAFE"
    granule = safe / "GRANULE" / "L2A_T45RTL_A000001_20240618T045521" / "IMG_DATA" / "R10m"
    ids = {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08"}
    for band, dn in s2_dn(-1000).items():
        write_band(granule / f"T45RTL_20240618T045521_{ids[band]}_10m.jp2", dn, driver="JP2OpenJPEG", REVERSIBLE="YES", QUALITY="100")  # lossless, as the products are
    names = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
    spectral = "".join(f'<Spectral_Information bandId="{k}" physicalBand="{n}"/>' for k, n in enumerate(names))
    band_list = "".join(f"<BAND_NAME>{n}</BAND_NAME>" for n in names)
    offsets = "".join(f'<BOA_ADD_OFFSET band_id="{k}">-1000</BOA_ADD_OFFSET>' for k in range(13))
    (safe / "MTD_MSIL2A.xml").write_text(
        f'<?xml version="1.0"?><n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int/PSD/User_Product_Level-2A.xsd">'
        f"<n1:General_Info><Product_Info><PRODUCT_START_TIME>2024-06-18T04:55:21.024Z</PRODUCT_START_TIME>"
        f"<Query_Options><Band_List>{band_list}</Band_List></Query_Options></Product_Info>"
        f"<Product_Image_Characteristics><QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE>10000</BOA_QUANTIFICATION_VALUE>"
        f"</QUANTIFICATION_VALUES_LIST><BOA_ADD_OFFSET_VALUES_LIST>{offsets}</BOA_ADD_OFFSET_VALUES_LIST>"
        f"<Spectral_Information_List>{spectral}</Spectral_Information_List></Product_Image_Characteristics>"
        f"</n1:General_Info></n1:Level-2A_User_Product>"
    )
    acquisition = read_input(safe)
    assert acquisition.sensor == "sentinel-2" and str(acquisition.date) == "2024-06-18"
    assert {a.offset for a in acquisition.assets.values()} == {-1000.0}
    run_stack([safe, *sar_items(tmp_path)], tmp_path / "s.tif", StackOptions(EVENT_DATE))
    np.testing.assert_array_equal(read_scene(tmp_path / "s.tif")[0][:4], expected_scene()[:4])


def test_sar_on_another_grid_is_resampled_and_no_data_where_any_input_lacks_coverage(tmp_path: Path) -> None:
    s2 = s2_item(tmp_path, "S2_post", "2024-06-18", style="pc", offset=1000, record="baseline")
    shifted = from_origin(600000.0 + 55.0, 3100000.0, 10.0, 10.0)  # 5.5 px east: the first 5 columns uncovered
    sar = [s1_item(tmp_path / "s1", orbit, date, transform=shifted if orbit == "ascending" else TRANSFORM)
           for orbit in ("descending", "ascending") for date in ("2024-05-01", "2024-06-20")]
    run_stack([s2, *sar], tmp_path / "s.tif", StackOptions(EVENT_DATE))
    scene = read_scene(tmp_path / "s.tif")[0]
    assert np.isnan(scene[:, :, :5]).all()  # every band no-data where the ascending acquisitions do not reach
    assert np.isfinite(scene[:, :, 7:]).all()
    # bilinear, half way between two shifted samples, on the linear power (then dB): column j from j - 6 and j - 5
    power = 10.0 ** (SAR_DB[("ascending", "vv", "2024-06-20")] / 10.0)
    expected = 10.0 * np.log10((power[:, 1:-5] + power[:, :-6]) / 2.0)  # columns 6 .. 39
    np.testing.assert_allclose(scene[8][:, 7:], expected[:, 1:], atol=1e-3)


def test_a_dated_scene_in_db_is_kept_as_given(tmp_path: Path) -> None:
    s2 = s2_item(tmp_path, "S2_post", "2024-06-18", style="pc", offset=1000, record="baseline")
    run_stack([s2, *sar_items(tmp_path, unit="db")], tmp_path / "s.tif", StackOptions(EVENT_DATE))
    np.testing.assert_allclose(read_scene(tmp_path / "s.tif")[0], expected_scene(), atol=1e-5)


def test_scl_classes_become_no_data_on_request(tmp_path: Path) -> None:
    s2 = s2_item(tmp_path, "S2_post", "2024-06-18", style="earth-search", offset=1000, record="raster:bands")
    scl = np.full((SIZE // 2, SIZE // 2), 4, np.uint8)
    scl[:5, :5] = 9  # cloud high probability, at 20 m
    write_band(tmp_path / "S2_post_scl.tif", scl, dtype="uint8", transform=from_origin(600000.0, 3100000.0, 20.0, 20.0))
    item = json.loads(s2.read_text())
    item["assets"]["scl"] = {"href": "S2_post_scl.tif"}
    s2.write_text(json.dumps(item))
    run_stack([s2, *sar_items(tmp_path)], tmp_path / "s.tif", StackOptions(EVENT_DATE, mask_scl=(8, 9, 10)))
    scene = read_scene(tmp_path / "s.tif")[0]
    assert np.isnan(scene[:, :10, :10]).all() and np.isfinite(scene[:, 10:, :]).all()


def make_inputs(tmp_path: Path) -> list[Path]:
    return [s2_item(tmp_path, "S2_post", "2024-06-18", style="pc", offset=1000, record="baseline"), *sar_items(tmp_path)]


def stack_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = landslide(["stack", *args])
    err = capsys.readouterr().err.strip().splitlines()
    return code, err[-1] if err else ""


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("no-offset", "states no offset for red"),
        ("event-day", "was acquired on the event date 2024-06-20"),
        ("no-ascending", "no Sentinel-1 acquisition ascending pre-event, ascending post-event"),
        ("remote", "is at https://example.com/red.tif, not a local file"),
        ("raster", "is a raster file, which does not say what it is"),
        ("bad-date", "--event-date '15/06/2024' is not a date; give YYYY-MM-DD"),
    ],
)
def test_bad_inputs_stop_in_one_line_and_write_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: str, message: str) -> None:
    inputs = make_inputs(tmp_path)
    event = EVENT
    if change == "no-offset":
        inputs[0] = s2_item(tmp_path / "n", "S2_x", "2024-06-18", style="pc", offset=1000, record="none")
    elif change == "event-day":
        inputs.append(s1_item(tmp_path / "e", "ascending", "2024-06-20"))
        event = "2024-06-20"
    elif change == "no-ascending":
        inputs = [p for p in inputs if "ascending" not in p.name]
    elif change == "remote":
        item = json.loads(inputs[0].read_text())
        item["assets"]["B04"]["href"] = "https://example.com/red.tif"
        inputs[0].write_text(json.dumps(item))
    elif change == "raster":
        inputs.append(tmp_path / "S2_post_B04.tif")
    elif change == "bad-date":
        event = "15/06/2024"
    out = tmp_path / "out" / "scene.tif"
    out.parent.mkdir()
    code, line = stack_cli([*map(str, inputs), "--event-date", event, "--out", str(out)], capsys)
    assert code == 1 and line.startswith("landslide-dvc stack: error: ") and message in line, line
    assert list(out.parent.iterdir()) == []


def test_stack_never_replaces_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = make_inputs(tmp_path)
    out = tmp_path / "scene.tif"
    out.write_bytes(b"the user's own file")
    code, line = stack_cli([*map(str, inputs), "--event-date", EVENT, "--out", str(out)], capsys)
    assert code == 1 and f"{out} exists; stack never replaces a file" in line
    assert out.read_bytes() == b"the user's own file"
    code, line = stack_cli([*map(str, inputs), "--event-date", EVENT, "--out", str(tmp_path / "S2_post_B04.tif")], capsys)
    assert code == 1 and "exists" in line


def test_the_segmentation_bundle_is_refused_with_the_reason() -> None:
    with pytest.raises(LandslideError, match="the release does not publish"):
        run_stack([], Path("x.tif"), StackOptions(EVENT_DATE), bundle_kind="segmentation")


def test_the_stacked_scene_is_what_predict_reads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from landslide_dvc.serve.scene_reader import open_scene

    out = tmp_path / "scene.tif"
    code, _ = stack_cli([*map(str, make_inputs(tmp_path)), "--event-date", EVENT, "--out", str(out)], capsys)
    assert code == 0
    with open_scene(out, list(RAW_BANDS), 32, kind="classifier") as src:  # predict's reader: bands, georeference
        assert (src.width, src.height, src.count) == (SIZE, SIZE, 12)


def test_crs_resolution_and_bounds_set_another_grid(tmp_path: Path) -> None:
    inputs = make_inputs(tmp_path)
    bounds = (600100.0, 3099800.0, 600300.0, 3100000.0)  # 200 x 200 m of the 400 x 400 m products
    run_stack(inputs, tmp_path / "a.tif", StackOptions(EVENT_DATE, resolution=20.0, bounds=bounds))
    with rasterio.open(tmp_path / "a.tif") as src:
        assert (src.width, src.height) == (10, 10) and src.res == (20.0, 20.0) and tuple(src.bounds) == bounds
        assert np.isfinite(src.read()).all()
    run_stack(inputs, tmp_path / "b.tif", StackOptions(EVENT_DATE, crs="EPSG:4326"))
    with rasterio.open(tmp_path / "b.tif") as src:
        assert src.crs.to_epsg() == 4326 and 80 < src.bounds.left < 90 and 25 < src.bounds.top < 30
    with pytest.raises(LandslideError, match="--bounds .* must be LEFT BOTTOM RIGHT TOP"):
        run_stack(inputs, tmp_path / "c.tif", StackOptions(EVENT_DATE, bounds=(1.0, 2.0, 0.0, 3.0)))


BUNDLES = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (BUNDLES / "models/bundle/manifest.json").is_file(), reason="dvc repro (models/bundle)")
def test_with_the_pipelines_bundles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inputs = [*map(str, make_inputs(tmp_path))]
    out = tmp_path / "scene.tif"
    code, _ = stack_cli([*inputs, "--event-date", EVENT, "--out", str(out), "--bundle", str(BUNDLES / "models/bundle")], capsys)
    assert code == 0 and out.is_file()
    seg = BUNDLES / "l4s/models/seg_bundle"
    if (seg / "manifest.json").is_file():
        code, line = stack_cli([*inputs, "--event-date", EVENT, "--out", str(tmp_path / "l4s.tif"), "--bundle", str(seg)], capsys)
        assert code == 1 and "the release does not publish" in line and not (tmp_path / "l4s.tif").exists()


def test_the_scene_has_its_own_stac_item(tmp_path: Path) -> None:
    import hashlib

    import pystac

    inputs = make_inputs(tmp_path)
    out = tmp_path / "out" / "scene.tif"
    run_stack(inputs, out, StackOptions(EVENT_DATE))
    item = pystac.Item.from_file(str(out.with_suffix(".item.json")))  # pystac reads it back
    assert item.id == "scene" and str(item.datetime.date()) == "2024-06-18"
    assert item.properties["start_datetime"].startswith("2024-05-01") and item.properties["end_datetime"].startswith("2024-06-20")
    scene = item.assets["scene"]
    assert scene.href.endswith("scene.tif") and scene.roles == ["data"]
    assert scene.extra_fields["file:checksum"] == "1220" + hashlib.sha256(out.read_bytes()).hexdigest()
    assert [b["name"] for b in scene.extra_fields["eo:bands"]] == list(RAW_BANDS)
    assert item.properties.get("proj:epsg") == 32645 or item.properties.get("proj:code") == CRS
    west, south, east, north = item.bbox
    assert 87.5 < west < east < 88.5 and 27.5 < south < north < 28.5  # UTM 45N (87° E), 600 km E, 3,100 km N
    derived = [link.target for link in item.links if link.rel == "derived_from"]
    assert len(derived) == len(inputs)


@pytest.mark.parametrize(("unit", "flag", "message"), [
    ("db", "linear", "is read as linear power but its values look like dB"),
    ("linear", "db", "is read as dB but its values look like linear power"),
])
def test_backscatter_in_the_other_unit_is_refused_by_its_range(tmp_path: Path, unit: str, flag: str, message: str) -> None:
    inputs = [s2_item(tmp_path, "S2_post", "2024-06-18", style="pc", offset=1000, record="baseline"), *sar_items(tmp_path, unit=unit)]
    with pytest.raises(LandslideError, match=message):
        run_stack(inputs, tmp_path / "s.tif", StackOptions(EVENT_DATE, sar_units=flag))
    assert not (tmp_path / "s.tif").exists()


def test_products_that_do_not_overlap_are_refused(tmp_path: Path) -> None:
    far = from_origin(700000.0, 3100000.0, 10.0, 10.0)  # 100 km east
    s2 = s2_item(tmp_path, "S2_post", "2024-06-18", style="pc", offset=1000, record="baseline")
    sar = [s1_item(tmp_path, orbit, date, transform=far) for orbit in ("descending", "ascending") for date in ("2024-05-01", "2024-06-20")]
    with pytest.raises(LandslideError, match="the products do not overlap"):
        run_stack([s2, *sar], tmp_path / "s.tif", StackOptions(EVENT_DATE))


def test_the_scene_is_a_valid_cloud_optimized_geotiff(tmp_path: Path) -> None:
    from rio_cogeo.cogeo import cog_validate

    out = tmp_path / "scene.tif"
    run_stack(make_inputs(tmp_path), out, StackOptions(EVENT_DATE))
    valid, errors, _ = cog_validate(str(out))
    assert valid and not errors
    with rasterio.open(out) as src:
        assert src.descriptions == RAW_BANDS and np.isnan(src.nodata) and src.tags()["LANDSLIDE_STACK"].endswith("scene.provenance.json")
