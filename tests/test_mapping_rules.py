"""The mapping rules on hand-made rasters whose answer is known, and their choice on validation data."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.transform import from_origin

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.geo import Georef, read_features
from landslide_dvc.core.mapping_rules import (
    MappingRules,
    RuleGrid,
    fill_small_holes,
    landslide_mask,
    object_counts_by_min_area,
    tune_rules,
)
from landslide_dvc.serve.maps import MapFiles, SceneMap, write_map_outputs

UTM = Georef(CRS.from_epsg(32633), from_origin(500000.0, 4100000.0, 10.0, 10.0))  # 100 m2 pixels


def blobs() -> np.ndarray:
    """A 40 x 40 map: a 2 x 2 px blob (400 m2), a 5 x 5 px blob (2,500 m2) with a 1 px hole, background 0.1."""
    probability = np.full((40, 40), 0.1, np.float32)
    probability[2:4, 2:4] = 0.9
    probability[20:25, 20:25] = 0.8
    probability[22, 22] = 0.2  # a hole inside the big blob
    return probability


def test_a_region_below_the_minimum_mapping_unit_is_dropped_and_one_above_kept() -> None:
    probability = blobs()
    kept = landslide_mask(probability, MappingRules(0.5, min_area_m2=500.0), 100.0)
    assert not kept[2:4, 2:4].any()  # 400 m2 < 500 m2
    assert kept[20:25, 20:25].sum() == 24  # 2,400 m2 (its hole not filled)
    at_unit = landslide_mask(probability, MappingRules(0.5, min_area_m2=400.0), 100.0)
    assert at_unit[2:4, 2:4].all()  # exactly the unit: kept


def test_a_flat_pixel_is_never_a_landslide_and_the_slope_rule_needs_a_slope_band() -> None:
    probability = np.full((10, 10), 0.99, np.float32)
    slope = np.tile(np.arange(10, dtype=np.float32), (10, 1))  # 0..9 from left to right
    slope[0, 9] = np.nan
    mask = landslide_mask(probability, MappingRules(0.5, min_slope=4.0), 100.0, slope)
    assert not mask[:, :4].any() and mask[1:, 4:].all() and not mask[0, 9]  # no slope known: not a landslide
    with pytest.raises(DataError, match="needs a slope band"):
        landslide_mask(probability, MappingRules(0.5, min_slope=4.0), 100.0, None)


def test_holes_are_filled_below_their_limit_but_not_background_open_to_the_edge() -> None:
    mask = np.zeros((12, 12), bool)
    mask[2:7, 2:7] = True
    mask[4, 4] = False  # a 1 px hole
    mask[:, 10] = True
    mask[0, 11] = False  # background at the border, enclosed on three sides only
    filled = fill_small_holes(mask, 2)
    assert filled[4, 4] and not filled[0, 11]
    assert not fill_small_holes(mask, 1)[4, 4]  # a 1 px hole is not under a 1 px limit
    rules = MappingRules(0.5, min_area_m2=2500.0, fill_holes_m2=200.0)
    assert landslide_mask(blobs(), rules, 100.0)[20:25, 20:25].all()  # filled, the blob is 2,500 m2 and kept


def test_the_polygons_follow_the_rules_and_the_map_records_them(tmp_path: Path) -> None:
    rules = MappingRules(0.5, min_area_m2=500.0)
    files = MapFiles(tmp_path / "m.tif", tmp_path / "m.gpkg")
    assert write_map_outputs(SceneMap(blobs(), UTM, 0.5, {}, None, rules), files) == 1
    _, columns, _ = read_features(files.polygons, ["area_m2"])
    assert list(columns["area_m2"]) == [2400.0]
    assert write_map_outputs(SceneMap(blobs(), UTM, 0.5, {}), files) == 2  # the threshold alone
    with pytest.raises(ValueError, match="threshold"):
        SceneMap(blobs(), UTM, 0.5, {}, None, MappingRules(0.6))


def test_object_counts_for_every_minimum_size_are_those_of_filtering_first() -> None:
    rng = np.random.default_rng(3)
    truth = rng.random((6, 24, 24)) < 0.15
    predicted = rng.random((6, 24, 24)) < 0.2
    sizes = [0, 1, 2, 3, 5]
    for size, counts in zip(sizes, object_counts_by_min_area(predicted, truth, sizes)):
        kept = landslide_mask(predicted.astype(np.float32), MappingRules(0.5, min_area_m2=float(size)), 1.0)
        (direct,) = object_counts_by_min_area(kept, truth, [0])
        assert counts == direct
    # regions never connect across patches: one pixel at the same place in two patches is two regions
    one = np.zeros((2, 4, 4), bool)
    one[:, 1, 1] = True
    assert object_counts_by_min_area(one, one, [0])[0].n_pred == 2


def test_the_tuned_rules_are_the_validation_maximum_over_the_grid() -> None:
    rng = np.random.default_rng(0)
    truth = np.zeros((8, 32, 32), bool)
    for k in range(8):  # one 6 x 6 landslide per patch
        r, c = rng.integers(2, 24, 2)
        truth[k, r : r + 6, c : c + 6] = True
    probability = np.clip(truth * 0.6 + rng.random(truth.shape) * 0.5, 0, 1).astype(np.float32)
    slope = rng.random(truth.shape).astype(np.float32) * 30
    slope[truth] += 10  # landslides on steeper ground
    grid = RuleGrid([0.4, 0.55, 0.7, 0.85], [0, 200, 1000], [0, 0.2, 0.5], fill_holes_m2=0.0)
    result = tune_rules(probability, truth, 100.0, grid, slope)

    def f1_of(threshold: float, area: float, quantile: float) -> float:
        limit = None if quantile == 0 else float(np.quantile(slope, quantile))
        mask = landslide_mask(probability, MappingRules(threshold, area, limit), 100.0, slope)
        return object_counts_by_min_area(mask, truth, [0])[0].f1

    scores = {c: f1_of(*c) for c in itertools.product(grid.thresholds, grid.min_areas_m2, grid.slope_quantiles)}
    best = max(scores.values())
    assert result["object"]["f1"] == pytest.approx(best, abs=1e-6)
    chosen = result["object"]
    quantile = next(q for q in grid.slope_quantiles
                    if (None if q == 0 else float(np.quantile(slope, q))) == chosen["min_slope"])
    assert scores[(chosen["threshold"], chosen["min_area_m2"], quantile)] == pytest.approx(best, abs=1e-9)
    assert best > scores[(0.4, 0, 0)]  # the rules help here: the search found something
    from sklearn.metrics import f1_score

    pixel = {t: f1_score(truth.ravel(), (probability >= t).ravel()) for t in grid.thresholds}
    assert result["pixel"]["threshold"] == max(pixel, key=pixel.get)
    assert result["pixel"]["f1"] == pytest.approx(max(pixel.values()), abs=1e-6)
