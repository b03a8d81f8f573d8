"""score_map: pixel and object scores of a map against hand-made truth, and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import from_origin
from shapely.geometry import box

from landslide_dvc.core.bands import RAW_BANDS
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.geo import Georef
from landslide_dvc.formats.scene_folder import TRUTH_NODATA, Truth, write_scene_folder
from landslide_dvc.pipeline.score_map import object_scores, pixel_scores, run_score_map
from landslide_dvc.serve.maps import MapFiles, SceneMap, write_map_outputs

GRID = Georef(CRS.from_epsg(32645), from_origin(600000.0, 3100000.0, 10.0, 10.0))


def test_pixel_scores_count_only_valid_scored_pixels_by_hand() -> None:
    mask = np.zeros((4, 4), np.uint8)
    mask[0, :2] = 1  # two landslide pixels
    mask[3, 3] = TRUTH_NODATA  # outside the swath: never counted
    mask[3, 2] = 1  # a landslide pixel the map does not score (NaN)
    probability = np.zeros((4, 4), np.float32)
    probability[0, 0] = 0.9  # true positive
    probability[0, 1] = 0.4  # false negative at threshold 0.5
    probability[1, 0] = 0.5  # false positive: at the threshold counts
    probability[3, 3] = 1.0  # no data in the truth
    probability[3, 2] = np.nan
    scores = pixel_scores(probability, Truth(mask, GRID, []), 0.5)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.5, 0.5, 0.5)
    assert scores["iou"] == pytest.approx(1 / 3, abs=1e-6)
    assert scores["n_valid"] == 14 and scores["coverage"] == pytest.approx(14 / 15, abs=1e-6)


def test_a_map_that_scores_nothing_inside_the_swath_is_refused() -> None:
    mask = np.full((3, 3), TRUTH_NODATA, np.uint8)
    mask[0, 0] = 0
    probability = np.full((3, 3), np.nan, np.float32)
    probability[1, 1] = 0.7
    with pytest.raises(DataError, match="scores no pixel inside the scene's swath"):
        pixel_scores(probability, Truth(mask, GRID, []), 0.5)


def test_objects_count_as_found_when_they_share_area_not_when_they_only_touch() -> None:
    true = [box(0, 0, 10, 10), box(20, 0, 30, 10), box(40, 0, 50, 10)]
    predicted = [
        box(5, 5, 15, 15),  # overlaps the first
        box(30, 0, 35, 10),  # touches the second along an edge only: neither found nor right
        box(100, 100, 110, 110),  # a false alarm
        box(2, 2, 3, 3),  # inside the first as well
    ]
    scores = object_scores(true, predicted)
    assert (scores["n_true"], scores["n_pred"], scores["n_found"], scores["n_right"]) == (3, 4, 1, 2)
    assert scores["recall"] == pytest.approx(1 / 3, abs=1e-6) and scores["precision"] == 0.5
    empty = object_scores(true, [])
    assert (empty["recall"], empty["precision"], empty["n_pred"]) == (0.0, 0.0, 0)


def hand_made_scene(folder: Path) -> np.ndarray:
    """A 40 x 40 scene with two 6 x 6 scars and a no-data corner; returns the truth's scar mask."""
    folder.mkdir(parents=True)
    scars = np.zeros((40, 40), bool)
    scars[4:10, 4:10] = True
    scars[25:31, 25:31] = True
    valid = np.ones((40, 40), bool)
    valid[36:, 36:] = False
    bands = np.random.default_rng(0).uniform(200, 2000, (12, 40, 40)).astype(np.float32)
    write_scene_folder(folder, bands, list(RAW_BANDS), scars, valid, GRID, {})
    return scars


def test_the_stage_scores_a_map_of_a_hand_made_scene(tmp_path: Path) -> None:
    scars = hand_made_scene(tmp_path / "scene")
    probability = np.full((40, 40), 0.1, np.float32)
    probability[4:10, 4:13] = 0.8  # finds the first scar, 18 extra pixels
    probability[15:18, 30:33] = 0.9  # a false alarm
    probability[36:, 36:] = np.nan  # not scored where the scene has no data
    uncertainty = np.zeros((40, 40), np.float32)
    uncertainty[15:18, 30:33] = 0.3  # the votes disagree on the false alarm only
    uncertainty[36:, 36:] = np.nan
    scene_map = SceneMap(probability, GRID, 0.5, {"LANDSLIDE_THRESHOLD": "0.5"}, uncertainty)
    write_map_outputs(scene_map, MapFiles(tmp_path / "map.tif", tmp_path / "map.gpkg"))
    metrics = run_score_map(tmp_path / "map.tif", tmp_path / "map.gpkg", tmp_path / "scene", tmp_path / "m.json",
                            tmp_path / "fig.png", "hand-made")
    assert json.loads((tmp_path / "m.json").read_text()) == metrics
    assert metrics["threshold"] == 0.5
    pixel = metrics["pixel"]
    tp, fp, fn = 36, 18 + 9, 36
    assert pixel["precision"] == pytest.approx(tp / (tp + fp), abs=1e-6)
    assert pixel["recall"] == pytest.approx(tp / (tp + fn), abs=1e-6)
    assert pixel["iou"] == pytest.approx(tp / (tp + fp + fn), abs=1e-6)
    assert pixel["coverage"] == 1.0 and pixel["landslide_share"] == pytest.approx(scars.sum() / (1600 - 16), abs=1e-6)
    objects = metrics["objects"]
    assert {k: objects[k] for k in ("recall", "precision", "n_true", "n_pred", "n_found", "n_right")} == {
        "recall": 0.5, "precision": 0.5, "n_true": 2, "n_pred": 2, "n_found": 1, "n_right": 1}
    assert objects["matched_iou"] == pytest.approx(36 / 54, abs=1e-6)  # the found scar (36 px) in its 54 px polygon
    # 10 m pixels: both scars 3,600 m2; the found one's polygon 5,400 m2, the false alarm 900 m2
    assert objects["by_size"] == {
        "under_100m2": {"recall": 0.0, "precision": 0.0, "n_true": 0, "n_found": 0, "n_pred": 0, "n_right": 0},
        "100_1000m2": {"recall": 0.0, "precision": 0.0, "n_true": 0, "n_found": 0, "n_pred": 1, "n_right": 0},
        "over_1000m2": {"recall": 0.5, "precision": 1.0, "n_true": 2, "n_found": 1, "n_pred": 1, "n_right": 1},
    }
    assert metrics["uncertainty"] == {
        "mean": pytest.approx(9 * 0.3 / (1600 - 16), abs=1e-6), "mean_where_right": 0.0,
        "mean_where_wrong": pytest.approx(9 * 0.3 / (fp + fn), abs=1e-6), "n_wrong": fp + fn,
    }
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("case", ["no threshold tag", "another grid"])
def test_a_map_that_is_not_predicts_or_not_on_the_scenes_grid_is_refused_without_outputs(tmp_path: Path, case: str) -> None:
    hand_made_scene(tmp_path / "scene")
    probability = np.full((40, 40), 0.1, np.float32)
    tags, grid = {"LANDSLIDE_THRESHOLD": "0.5"}, GRID
    if case == "no threshold tag":
        tags = {}
    else:
        grid = Georef(GRID.crs, from_origin(600010.0, 3100000.0, 10.0, 10.0))
    write_map_outputs(SceneMap(probability, grid, 0.5, tags), MapFiles(tmp_path / "map.tif", tmp_path / "map.gpkg"))
    message = "no LANDSLIDE_THRESHOLD tag" if case == "no threshold tag" else "is not on the grid of"
    with pytest.raises(DataError, match=message) as info:
        run_score_map(tmp_path / "map.tif", tmp_path / "map.gpkg", tmp_path / "scene", tmp_path / "m.json",
                      tmp_path / "fig.png", "t")
    assert "\n" not in str(info.value)
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "fig.png").exists()
