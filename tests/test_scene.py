"""The scenes with known landslides (synthesize_scene, synthesize_l4s_scene): layout, truth, determinism."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import rasterio
from conftest import REPO_ROOT

from landslide_dvc.core.bands import L4S_BANDS, RAW_BANDS
from landslide_dvc.core.geo import label_regions, read_features
from landslide_dvc.core.params import get_section, load_params
from landslide_dvc.formats.scene_folder import SCENE_NODATA, TRUTH_NODATA, read_truth
from landslide_dvc.pipeline.synthesize_l4s_scene import run_synthesize_l4s_scene
from landslide_dvc.pipeline.synthesize_scene import run_synthesize_scene
from landslide_dvc.synthetic import stand_in as synthetic
from landslide_dvc.synthetic.scenes import SceneParams, swath_mask
from landslide_dvc.synthetic.stand_in import SynthesizeParams, generate_split
from landslide_dvc.synthetic.stand_in_l4s import SynthesizeL4SParams

ZINDI = load_params(REPO_ROOT / "params.yaml")
L4S = load_params(REPO_ROOT / "l4s" / "params.yaml")
FILES = ("scene.tif", "truth.tif", "truth.gpkg")


def small_scene(**change: object) -> SceneParams:
    return SceneParams(**{**ZINDI["scene"], "size": 192, "scars_per_km2": 8.0, **change})


def digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in FILES}


@pytest.fixture(scope="module")
def zindi_scene(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    out = tmp_path_factory.mktemp("zindi") / "scene"
    scene, n_truth = run_synthesize_scene(small_scene(), get_section(ZINDI, SynthesizeParams, "synthesize"), out)
    return out, scene.n_scars, n_truth


def test_the_scene_is_twelve_zindi_bands_on_a_utm_grid_with_a_declared_no_data_corner(zindi_scene: tuple[Path, int, int]) -> None:
    folder, _, _ = zindi_scene
    params = small_scene()
    with rasterio.open(folder / "scene.tif") as src:
        assert (src.count, src.height, src.width, src.dtypes[0]) == (12, 192, 192, "float32")
        assert list(src.descriptions) == list(RAW_BANDS)
        assert src.crs.to_epsg() == params.utm_epsg and src.nodata == SCENE_NODATA
        assert (src.transform.a, src.transform.e, src.transform.c, src.transform.f) == (10.0, -10.0, *params.origin_m)
        bands = src.read()
    nodata = (bands == SCENE_NODATA).all(axis=0)
    assert (bands == SCENE_NODATA).any(axis=0).sum() == nodata.sum()  # no data in every band or none
    np.testing.assert_array_equal(~nodata, swath_mask(192, params.nodata_share))
    assert abs(nodata.mean() - params.nodata_share) < 0.01
    assert nodata[-1, -1] and not nodata[0, 0]  # the lower-right corner is outside the swath
    optical = bands[:4][:, ~nodata]
    assert optical.min() >= 0 and np.all(optical == np.rint(optical))  # Sentinel-2 digital numbers
    assert 300 < np.median(optical) < 3000


def test_the_truth_marks_the_scars_and_its_polygons_are_their_connected_regions(zindi_scene: tuple[Path, int, int]) -> None:
    folder, n_scars, n_truth = zindi_scene
    truth = read_truth(folder)
    with rasterio.open(folder / "scene.tif") as src:
        scene_nodata = src.read(1) == SCENE_NODATA
    np.testing.assert_array_equal(truth.mask == TRUTH_NODATA, scene_nodata)
    assert set(np.unique(truth.mask)) == {0, 1, TRUTH_NODATA}
    _, count = label_regions(truth.mask == 1)
    assert n_truth == count == len(truth.polygons) and n_scars > 0
    _, columns, _ = read_features(folder / "truth.gpkg", ["area_m2"])
    assert columns["area_m2"].sum() == pytest.approx(100.0 * (truth.mask == 1).sum())  # 10 m pixels
    assert sum(p.area for p in truth.polygons) == pytest.approx(100.0 * (truth.mask == 1).sum())


def test_scars_look_like_fresh_soil_in_the_optics(zindi_scene: tuple[Path, int, int]) -> None:
    folder, _, _ = zindi_scene
    truth = read_truth(folder)
    with rasterio.open(folder / "scene.tif") as src:
        red, nir = src.read(1).astype(np.float64), src.read(4).astype(np.float64)
    ndvi = (nir - red) / (nir + red + 1e-9)
    assert np.median(ndvi[truth.mask == 1]) < np.median(ndvi[truth.mask == 0]) - 0.15


def test_the_same_parameters_give_the_same_bytes_and_another_seed_another_scene(tmp_path: Path, zindi_scene: tuple[Path, int, int]) -> None:
    folder, _, _ = zindi_scene
    synth = get_section(ZINDI, SynthesizeParams, "synthesize")
    run_synthesize_scene(small_scene(), synth, tmp_path / "again")
    assert digests(tmp_path / "again") == digests(folder)
    run_synthesize_scene(small_scene(seed=1), synth, tmp_path / "other")
    assert digests(tmp_path / "other")["scene.tif"] != digests(folder)["scene.tif"]


def test_the_l4s_scene_holds_the_fourteen_rescaled_release_bands(tmp_path: Path) -> None:
    params = SceneParams(**{**L4S["scene"], "size": 160})
    scene, n_truth = run_synthesize_l4s_scene(params, get_section(L4S, SynthesizeL4SParams, "synthesize_l4s"), tmp_path / "s")
    with rasterio.open(tmp_path / "s" / "scene.tif") as src:
        assert list(src.descriptions) == list(L4S_BANDS)
        bands = src.read(masked=True)
    valid = bands[:12].compressed()
    assert -5 < float(np.median(valid)) < 5 and float(valid.std()) < 5  # rescaled, as the release is
    assert n_truth == len(read_truth(tmp_path / "s").polygons) and scene.n_scars > 0


def test_painting_objects_in_pieces_gives_the_same_bytes_as_in_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large landscapes paint their scars in pieces; the patch datasets' bytes must not depend on it."""
    params = SynthesizeParams(n_train=64, n_test=2, seed=3)
    whole, _ = generate_split(64, 0.5, "train", np.random.default_rng(5), params)
    monkeypatch.setattr(synthetic, "_MASK_BUDGET", 3 * 64 * 64)  # three objects per piece
    pieces, _ = generate_split(64, 0.5, "train", np.random.default_rng(5), params)
    np.testing.assert_array_equal(whole, pieces)


def test_a_landscape_counts_hundreds_of_scars() -> None:
    """Regression: a patch holds at most three scars, a landscape hundreds (an int8 count wrapped around)."""
    from landslide_dvc.synthetic.scenes import draw_zindi_scene

    scene = draw_zindi_scene(small_scene(scars_per_km2=50.0), get_section(ZINDI, SynthesizeParams, "synthesize"))
    assert scene.n_scars > 127


def test_a_landscape_paints_its_objects_in_boxes_as_over_the_whole_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scars, look-alikes and fields of a landscape are painted only around themselves; the bytes are
    those of masks over the whole grid (the slow way, forced here)."""
    from landslide_dvc.synthetic.scenes import draw_zindi_scene

    params, synth = small_scene(scars_per_km2=20.0, fields_per_km2=10.0), get_section(ZINDI, SynthesizeParams, "synthesize")
    boxed = draw_zindi_scene(params, synth)
    whole_grid = synthetic._ObjectMasks.__init__

    def over_the_whole_grid(self: object, *args: object, boxed: bool, **kwargs: object) -> None:
        whole_grid(self, *args, boxed=False, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(synthetic._ObjectMasks, "__init__", over_the_whole_grid)
    full = draw_zindi_scene(params, synth)
    assert boxed.n_scars == full.n_scars > 20
    np.testing.assert_array_equal(boxed.bands, full.bands)
    np.testing.assert_array_equal(boxed.scars, full.scars)
