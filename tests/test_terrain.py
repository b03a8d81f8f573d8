"""The terrain behind the slope rule of a Zindi scene (`core.terrain`, `serve.scene_reader.dem_slope`) and outline
smoothing: slopes of planes known by construction, a DEM in another CRS warped onto the scene, flat ground
that never holds a landslide, and smoothed polygons that keep their pixel-count areas."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from shapely.geometry import box

from landslide_dvc.cli import main
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.geo import EARTH_RADIUS_M, read_features
from landslide_dvc.core.mapping_rules import MappingRules
from landslide_dvc.core.terrain import slope_degrees, smooth_outline
from landslide_dvc.serve.maps import Georef, MapFiles, SceneMap, write_map_outputs
from landslide_dvc.serve.scene_reader import dem_slope

UTM = Georef(CRS.from_epsg(32633), from_origin(500000.0, 4100000.0, 10.0, 10.0))


def tilted_plane(height: int, width: int, degrees: float, pixel_m: float, towards: str = "east") -> np.ndarray:
    """Elevations (m) of a plane rising ``degrees`` towards the east or the north, on ``pixel_m`` pixels."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    distance = cols * pixel_m if towards == "east" else (height - rows) * pixel_m
    return 100.0 + math.tan(math.radians(degrees)) * distance


@pytest.mark.parametrize("degrees", [0.0, 5.0, 30.0, 60.0])
@pytest.mark.parametrize("towards", ["east", "north"])
def test_a_planes_slope_is_its_angle_everywhere_edges_included(degrees: float, towards: str) -> None:
    slope = slope_degrees(tilted_plane(20, 30, degrees, 10.0, towards), UTM)
    assert slope.shape == (20, 30) and slope.dtype == np.float32
    assert np.abs(slope - degrees).max() < 1e-3


def test_horns_weights_by_hand_on_one_neighbourhood() -> None:
    z = np.array([[1.0, 2.0, 4.0], [2.0, 3.0, 7.0], [3.0, 5.0, 9.0]])
    dz_dx = ((4 + 2 * 7 + 9) - (1 + 2 * 2 + 3)) / (8 * 10.0)  # east minus west, centre column weighted 2
    dz_dy = ((3 + 2 * 5 + 9) - (1 + 2 * 2 + 4)) / (8 * 10.0)  # south minus north
    expected = math.degrees(math.atan(math.hypot(dz_dx, dz_dy)))
    assert slope_degrees(z, UTM)[1, 1] == pytest.approx(expected, rel=1e-6)


def test_on_a_geographic_grid_distances_are_metres_on_the_sphere_at_each_latitude() -> None:
    step = 1e-4  # degrees, ~11 m
    georef = Georef(CRS.from_epsg(4326), from_origin(15.0, 37.0, step, step))
    east_m = math.radians(step) * EARTH_RADIUS_M * math.cos(math.radians(37.0 - 10.5 * step))
    slope = slope_degrees(tilted_plane(21, 21, 20.0, east_m, "east"), georef)
    assert slope[10, 10] == pytest.approx(20.0, abs=1e-3)  # the centre row's spacing is the one the plane was built on
    north_m = math.radians(step) * EARTH_RADIUS_M
    assert slope_degrees(tilted_plane(21, 21, 20.0, north_m, "north"), georef)[10, 10] == pytest.approx(20.0, abs=1e-6)


def test_a_rotated_grid_or_a_single_row_is_refused() -> None:
    from affine import Affine

    with pytest.raises(DataError, match="rotated"):
        slope_degrees(np.zeros((5, 5)), Georef(UTM.crs, Affine(10.0, 1.0, 0.0, 1.0, -10.0, 0.0)))
    with pytest.raises(DataError, match="at least 2 x 2"):
        slope_degrees(np.zeros((1, 5)), UTM)


def write_dem(path: Path, elevation: np.ndarray, georef: Georef, nodata: float | None = None) -> None:
    profile = {"driver": "GTiff", "width": elevation.shape[1], "height": elevation.shape[0], "count": 1,
               "dtype": "float32", "crs": georef.crs, "transform": georef.transform, "nodata": nodata}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(elevation.astype(np.float32), 1)


def test_a_dem_in_another_crs_and_resolution_is_warped_onto_the_scene_and_gives_its_slope(tmp_path: Path) -> None:
    # a 30 m DEM in the scene's zone, and a flat one in WGS 84 degrees; both cover the 10 m scene
    dem_grid = Georef(UTM.crs, from_origin(499700.0, 4100300.0, 30.0, 30.0))
    write_dem(tmp_path / "dem30.tif", tilted_plane(60, 60, 25.0, 30.0), dem_grid)
    result = dem_slope(tmp_path / "dem30.tif", UTM, 64, 64)
    assert result.coverage == 1.0 and result.degrees.shape == (64, 64)
    assert np.abs(result.degrees - 25.0).max() < 0.05  # bilinear resampling of a plane is the plane

    from rasterio.warp import transform_bounds

    left, _, _, top = transform_bounds(UTM.crs, CRS.from_epsg(4326), 500000.0, 4099360.0, 500640.0, 4100000.0)
    write_dem(tmp_path / "flat_wgs84.tif", np.full((200, 200), 812.0),
              Georef(CRS.from_epsg(4326), from_origin(left - 0.05, top + 0.05, 1e-3, 1e-3)))
    flat = dem_slope(tmp_path / "flat_wgs84.tif", UTM, 64, 64)
    assert flat.coverage == 1.0 and np.abs(flat.degrees).max() < 1e-6


def test_dem_voids_leave_the_rule_off_there_and_a_dem_elsewhere_is_refused(tmp_path: Path) -> None:
    elevation = np.full((64, 64), 500.0)
    elevation[:, 40:] = -9999.0  # the DEM's no-data value over the east of the scene
    write_dem(tmp_path / "voids.tif", elevation, UTM, nodata=-9999.0)
    result = dem_slope(tmp_path / "voids.tif", UTM, 64, 64)
    assert result.coverage == pytest.approx(40 / 64)
    assert np.isinf(result.degrees[:, 40:]).all()  # unknown slope: passes any limit
    assert np.abs(result.degrees[:, :38]).max() < 1e-6  # flat where known (the column next to the void is unknown)

    far = Georef(UTM.crs, from_origin(700000.0, 4300000.0, 10.0, 10.0))
    write_dem(tmp_path / "far.tif", np.zeros((64, 64)), far)
    with pytest.raises(DataError, match=r"far\.tif does not cover the scene"):
        dem_slope(tmp_path / "far.tif", UTM, 64, 64)
    (tmp_path / "broken.tif").write_text("not a raster")
    with pytest.raises(DataError, match=r"broken\.tif is not a readable raster"):
        dem_slope(tmp_path / "broken.tif", UTM, 64, 64)


def test_flat_ground_never_holds_a_landslide_and_steep_ground_keeps_it(tmp_path: Path) -> None:
    probability = np.zeros((64, 64), np.float32)
    probability[10:30, 10:30] = 0.9
    probability[40:50, 40:60] = 0.8
    elevation = tilted_plane(64, 64, 15.0, 10.0)
    elevation[35:, :] = 300.0  # the south of the scene is a flat plateau
    write_dem(tmp_path / "dem.tif", elevation, UTM)
    slope = dem_slope(tmp_path / "dem.tif", UTM, 64, 64).degrees
    rules = MappingRules(0.5, min_slope=5.0)
    files = MapFiles(tmp_path / "m.tif", tmp_path / "m.gpkg")
    assert write_map_outputs(SceneMap(probability, UTM, 0.5, {}, rules=rules, slope=slope), files) == 1
    shapes, columns, _ = read_features(files.polygons, ["area_m2"])
    assert columns["area_m2"].tolist() == [20 * 20 * 100.0] and shapes[0].bounds[1] > 4100000.0 - 31 * 10.0
    assert write_map_outputs(SceneMap(probability, UTM, 0.5, {}, rules=MappingRules(0.5)), files) == 2  # no rule: both


def test_smoothing_rounds_the_staircase_inside_the_outline_and_keeps_the_pixel_area(tmp_path: Path) -> None:
    square = box(0.0, 0.0, 40.0, 40.0)  # 4 x 4 pixels of 10 m
    once, twice = smooth_outline(square, 1, 10.0), smooth_outline(square, 2, 10.0)
    assert len(once.exterior.coords) == 2 * 16 + 1 and len(twice.exterior.coords) == 4 * 16 + 1
    # each corner is cut at a quarter of its pixel-long edges: a right triangle of legs 2.5 m
    assert once.area == pytest.approx(1600.0 - 4 * 0.5 * 2.5 * 2.5)
    assert square.contains(twice) and twice.is_valid and smooth_outline(square, 0, 10.0) is square
    assert square.hausdorff_distance(twice) < 10.0  # within a pixel of the pixel-edge outline

    probability = np.zeros((64, 64), np.float32)
    probability[10:20, 10:30] = 0.9
    probability[14:16, 18:22] = 0.1  # a hole: smoothed as a ring too
    files = MapFiles(tmp_path / "m.tif", tmp_path / "m.gpkg")
    write_map_outputs(SceneMap(probability, UTM, 0.5, {}, smooth=3), files)
    shapes, columns, _ = read_features(files.polygons, ["area_m2"])
    assert columns["area_m2"].tolist() == [(200 - 8) * 100.0]  # the pixels', not the smoothed outline's
    assert len(shapes[0].interiors) == 1 and shapes[0].is_valid
    assert 0.98 * 19200.0 < shapes[0].area < 19200.0 + 800.0  # the hole shrinks as the corners are cut


def predict(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["predict", *argv, "--device", "cpu"])
    return code, capsys.readouterr().err.strip().splitlines()[-1] if code else ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dem", "dem.tif"], "--dem needs --min-slope DEGREES"),
        (["--min-slope", "5"], "--min-slope needs a slope band or --dem DEM.tif"),
        (["--dem", "dem.tif", "--min-slope", "5", "--no-slope-rule"], "not both"),
        (["--smooth", "-1"], "--smooth -1 must be >= 0"),
    ],
)
def test_the_cli_refuses_terrain_options_it_cannot_use_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, extra: list[str], message: str
) -> None:
    from landslide_dvc.serve import bundle as bundle_module

    class Loaded:  # only what the option checks read of a classifier bundle
        bands = ["Red", "Green", "Blue", "NIR", "DVV", "DVH", "DDVV", "DDVH", "AVV", "AVH", "ADVV", "ADVH"]

        def to(self, device: object) -> Loaded:
            return self

    monkeypatch.setattr(bundle_module, "load_bundle", lambda path: Loaded())
    code, line = predict(["scene.tif", "--out", str(tmp_path / "map.tif"), *extra], capsys)
    assert code != 0 and message in line
    assert not (tmp_path / "map.tif").exists()
