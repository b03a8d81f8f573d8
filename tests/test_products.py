"""The demo's products (`synthesize_products`) stacked back (`stack_scene`): the scene map_scene maps.

The stand-in scene is rendered as a Sentinel-2 L2A SAFE folder and Sentinel-1 RTC files in linear
power, then stacked by `landslide-dvc stack`'s code. The stacked scene must equal the directly
synthesised one within the rounding of the product formats:

- optical: exact (0 DN) from a baseline-04.00+ product, whose DN are the archive's + 1,000; from an
  older product (offset 0) exact but where the archive holds 0, which a product stores as 1 (0 is
  no data): at most 1 DN there;
- SAR: float32 linear power and back through 10 log10: at most 1e-4 dB (measured here at most
  3.8e-6 dB on the post-event bands and 5.7e-6 dB on the Diff bands, float32's step near 30 dB);
- no-data: the same pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from landslide_dvc.core.errors import ParamError
from landslide_dvc.core.params import get_section, load_params
from landslide_dvc.formats.scene_folder import utm_georef, write_scene_folder
from landslide_dvc.pipeline.stack_scene import StackSceneParams, run_stack_scene, stack_inputs
from landslide_dvc.pipeline.synthesize_products import read_scene_bands, run_synthesize_products
from landslide_dvc.serve.stack import StackOptions, read_input, run_stack
from landslide_dvc.synthetic.products import ProductsParams, s2_digital_numbers, scene_classification
from landslide_dvc.synthetic.scenes import PIXEL_M, SceneParams, draw_zindi_scene
from landslide_dvc.synthetic.stand_in import SynthesizeParams

ROOT = Path(__file__).resolve().parents[1]
SAR_TOLERANCE_DB = 1e-4
NEW = ProductsParams(event_date="2024-06-15", processing_baseline="05.10")
OLD = ProductsParams(event_date="2020-06-15", processing_baseline="02.14")


@pytest.fixture(scope="module")
def direct_scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 160 px stand-in scene, written as synthesize_scene writes data/scene/ (the repo's params)."""
    params = load_params(ROOT / "params.yaml")
    scene_params = get_section(params, SceneParams, "scene")
    scene_params = SceneParams(**{**scene_params.__dict__, "size": 160, "cloud_share": 0.2, "nodata_share": 0.1})
    drawn = draw_zindi_scene(scene_params, get_section(params, SynthesizeParams, "synthesize"))
    folder = tmp_path_factory.mktemp("scene")
    write_scene_folder(folder, drawn.bands, drawn.band_names, drawn.scars, drawn.valid,
                       utm_georef(scene_params.utm_epsg, scene_params.origin_m, PIXEL_M), {})
    return folder / "scene.tif"


def products_and_stack(tmp: Path, scene: Path, params: ProductsParams, mask_scl: list[int] | None = None) -> Path:
    run_synthesize_products(params, scene, tmp / "products")
    run_stack_scene(StackSceneParams(mask_scl=mask_scl or []), params, tmp / "products", tmp / "stacked", "scene.tif")
    return tmp / "stacked" / "scene.tif"


def read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    bands, valid, _ = read_scene_bands(path)
    return bands, valid


def max_errors(stacked: np.ndarray, direct: np.ndarray, valid: np.ndarray) -> list[float]:
    return [float(np.abs(s[valid] - d[valid]).max()) for s, d in zip(stacked, direct)]


def test_the_stacked_scene_is_the_direct_scene_within_the_products_rounding(tmp_path: Path, direct_scene: Path) -> None:
    stacked_file = products_and_stack(tmp_path, direct_scene, NEW)
    direct, valid = read(direct_scene)
    stacked, stacked_valid = read(stacked_file)
    np.testing.assert_array_equal(stacked_valid, valid)  # the no-data corner, and nothing else
    errors = max_errors(stacked, direct, valid)
    print("max error per band:", dict(zip(("Red", "Green", "Blue", "NIR", "DVV", "DVH", "DDVV", "DDVH", "AVV", "AVH", "ADVV", "ADVH"), errors)))
    assert errors[:4] == [0.0] * 4  # DN + 1000 in the product, - 1000 by stack: exact
    assert max(errors[4:]) <= SAR_TOLERANCE_DB
    assert max(errors[4:]) > 0  # float32 linear power does round: the check compares what it claims to
    with rasterio.open(stacked_file) as src:  # the scene predict takes: band names, NaN no-data
        assert src.descriptions[:2] == ("Red", "Green") and np.isnan(src.nodata)


def test_an_older_product_without_the_offset_stacks_to_the_same_scene(tmp_path: Path, direct_scene: Path) -> None:
    new, valid = read(products_and_stack(tmp_path / "new", direct_scene, NEW))
    old, _ = read(products_and_stack(tmp_path / "old", direct_scene, OLD))
    direct, _ = read(direct_scene)
    # the product files differ by the offset ...
    safe_new, safe_old = (next((tmp_path / v / "products").glob("*.SAFE")) for v in ("new", "old"))
    b04_new, b04_old = (next(s.glob("GRANULE/*/IMG_DATA/R10m/*_B04_10m.jp2")) for s in (safe_new, safe_old))
    with rasterio.open(b04_new) as a, rasterio.open(b04_old) as b:
        dn_new, dn_old = a.read(1).astype(int), b.read(1).astype(int)
    assert np.all(dn_new[valid] - np.maximum(dn_old[valid], 1) == 1000 - (dn_old[valid] == 1))  # + 1000, 0 DN kept as 1
    # ... and the stacked scenes agree: exactly where the archive holds no 0 DN, within 1 DN where it does
    zero = direct[:4] == 0
    assert np.abs(old[:4] - new[:4])[np.broadcast_to(valid, zero.shape)].max() <= 1.0
    np.testing.assert_array_equal(old[:4][~zero & valid], new[:4][~zero & valid])
    np.testing.assert_array_equal(old[4:], new[4:])


def test_the_sentinel_2_item_gives_the_scene_of_the_safe_folder(tmp_path: Path, direct_scene: Path) -> None:
    stacked_file = products_and_stack(tmp_path, direct_scene, NEW)
    products = tmp_path / "products"
    s2_item = next(p for p in products.glob("S2*.json"))
    item = pystac.Item.from_file(str(s2_item))
    assert set(item.assets) == {"red", "green", "blue", "nir", "scl"}
    assert item.assets["red"].extra_fields["raster:bands"][0]["offset"] == -0.1  # Earth Search's record
    s1_items = sorted(products.glob("S1*.json"))
    run_stack([s2_item, *s1_items], tmp_path / "via_item.tif", StackOptions(NEW.event))
    np.testing.assert_array_equal(read(tmp_path / "via_item.tif")[0], read(stacked_file)[0])


def test_the_products_say_what_they_are_in_their_own_metadata(tmp_path: Path, direct_scene: Path) -> None:
    run_synthesize_products(NEW, direct_scene, tmp_path / "products")
    inputs = stack_inputs(tmp_path / "products")
    acquisitions = [read_input(p) for p in inputs]
    s2 = [a for a in acquisitions if a.sensor == "sentinel-2"]
    s1 = [a for a in acquisitions if a.sensor == "sentinel-1"]
    assert len(s2) == 1 and s2[0].assets["red"].offset == -1000.0 and s2[0].assets["red"].nodata == 0.0
    assert sorted((a.orbit, a.date < NEW.event) for a in s1) == [
        ("ascending", False), ("ascending", True), ("descending", False), ("descending", True)]
    safe = s2[0].source
    assert (safe / "MTD_MSIL2A.xml").read_text().count("<BOA_ADD_OFFSET band_id=") == 13
    assert list(safe.glob("GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2")) and list(safe.glob("GRANULE/*/IMG_DATA/R20m/*_B04_20m.jp2"))
    with rasterio.open(next(safe.glob("GRANULE/*/IMG_DATA/R10m/*_B04_10m.jp2"))) as src:
        assert src.driver == "JP2OpenJPEG" and src.dtypes[0] == "uint16" and src.res == (10.0, 10.0)
    with rasterio.open(next(safe.glob("GRANULE/*/IMG_DATA/R20m/*_SCL_20m.jp2"))) as src:
        assert src.res == (20.0, 20.0)
    with rasterio.open(s1[0].assets["vv"].path) as src:  # RTC gamma0 in linear power
        power = src.read(1, masked=True)
        assert src.dtypes[0] == "float32" and 0 < float(np.ma.median(power)) < 1


def test_the_stage_masks_the_scl_classes_it_is_given(tmp_path: Path, direct_scene: Path) -> None:
    kept, valid = read(products_and_stack(tmp_path / "kept", direct_scene, NEW))
    masked, masked_valid = read(products_and_stack(tmp_path / "masked", direct_scene, NEW, mask_scl=[9]))
    direct, _ = read(direct_scene)
    cloud = np.kron(scene_classification(direct[:4], valid)[::2, ::2] == 9, np.ones((2, 2), bool))  # nearest from 20 m
    assert cloud.any() and np.all(masked_valid == (valid & ~cloud))
    np.testing.assert_array_equal(masked[:, masked_valid], kept[:, masked_valid])


def test_the_stacked_scene_maps_and_scores_as_the_direct_scene(tmp_path: Path, direct_scene: Path) -> None:
    """The same map within the tolerance: the probabilities within 1e-4, the scores equal."""
    import torch
    from test_predict_scene import tiny_bundle

    from landslide_dvc.pipeline.score_map import run_score_map
    from landslide_dvc.serve.predict import predict_scene

    stacked_file = products_and_stack(tmp_path, direct_scene, NEW)
    bundle = tiny_bundle("fc", 4)
    scores = {}
    for name, scene in (("direct", direct_scene), ("stacked", stacked_file)):
        out = tmp_path / "maps" / name / "map.tif"
        out.parent.mkdir(parents=True)
        predict_scene(bundle, scene, out, out.with_suffix(".gpkg"), 32, torch.device("cpu"), 64)
        with rasterio.open(out) as src:
            scores[name] = (src.read(1), run_score_map(out, out.with_suffix(".gpkg"), direct_scene.parent,
                                                       out.with_suffix(".json"), out.with_suffix(".png"), name))
    (p_direct, m_direct), (p_stacked, m_stacked) = scores["direct"], scores["stacked"]
    np.testing.assert_array_equal(np.isnan(p_direct), np.isnan(p_stacked))
    assert np.nanmax(np.abs(p_direct - p_stacked)) <= 1e-4
    assert m_direct["pixel"] == m_stacked["pixel"] and m_direct["objects"] == m_stacked["objects"]
    item_file = tmp_path / "maps" / "stacked" / "map.item.json"
    assert item_file.is_file() and not (tmp_path / "maps" / "direct" / "map.item.json").exists()  # only the stacked scene is dated
    item = json.loads(item_file.read_text())
    assert item["properties"]["datetime"].startswith("2024-06-18")  # the post-event Sentinel-2 acquisition


def test_digital_numbers_keep_0_for_no_data() -> None:
    dn = s2_digital_numbers(np.array([[0.0, 5.0], [64000.0, 7.0]]), np.array([[True, True], [True, False]]), 0)
    np.testing.assert_array_equal(dn, [[1, 5], [64000, 0]])
    np.testing.assert_array_equal(s2_digital_numbers(np.array([[0.0, 65000.0]]), np.ones((1, 2), bool), -1000), [[1000, 65534]])


@pytest.mark.parametrize(("cls", "section", "fields", "message"), [
    (ProductsParams, "products", {"event_date": "15/06/2024", "processing_baseline": "05.10"}, "products.event_date"),
    (ProductsParams, "products", {"event_date": "2024-06-15", "processing_baseline": "new"}, "products.processing_baseline"),
    (StackSceneParams, "stack_scene", {"mask_scl": [9, 12]}, "stack_scene.mask_scl"),
])
def test_bad_params_are_refused_naming_the_key(cls: type, section: str, fields: dict, message: str) -> None:
    with pytest.raises(ParamError, match=message):
        get_section({section: fields}, cls, section)
