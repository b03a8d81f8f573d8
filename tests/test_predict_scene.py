"""The scene path of `landslide-dvc predict` without a trained bundle: blending weights, the batched
TTA scorer against the pipeline's `core.inference.predict`, per-patch scale checks, georeference
checks, and the GIS outputs (Cloud Optimized GeoTIFF, polygons). End-to-end runs with a bundle
made by the pipeline are in tests/test_bundle.py."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.transform import from_origin

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.inference import predict
from landslide_dvc.core.model import ModelParams, create_model
from landslide_dvc.serve.blend import (
    TAPER_FLOOR,
    Blender,
    edge_taper,
    neighbour_jumps,
    window_boundaries,
    window_weights,
)
from landslide_dvc.serve.bundle import Bundle, scale_misfits
from landslide_dvc.serve.maps import (
    Georef,
    MapFiles,
    SceneMap,
    find_regions,
    overview_count,
    write_cog,
    write_map_outputs,
    write_polygons,
)
from landslide_dvc.serve.predict import score_scene
from landslide_dvc.serve.scene_reader import open_scene, window_offsets
from landslide_dvc.serve.strips import Tiles

UTM = Georef(CRS.from_epsg(32633), from_origin(500000.0, 4100000.0, 10.0, 10.0))
BANDS = ["Red", "Green", "Blue", "NIR", "DVV", "DVH", "DDVV", "DDVH", "AVV", "AVH", "ADVV", "ADVH"]


# ----------------------------------------------------------------------------------------------
# Blending weights


def test_the_taper_is_a_hann_window_at_pixel_centres_with_a_floor() -> None:
    t = edge_taper(64)
    assert t.shape == (64,) and np.allclose(t, t[::-1]) and t.max() <= 1.0
    assert t[0] == pytest.approx(max(TAPER_FLOOR, math.sin(math.pi / 128) ** 2))
    assert t[31] == pytest.approx(math.sin(math.pi * 31.5 / 64) ** 2)
    assert t.min() >= TAPER_FLOOR
    # at stride = window / 2 the shifted tapers sum to 1 (sin^2 + cos^2) away from the floored edge pixels
    assert np.allclose(t[33:63] + t[1:31], 1.0, atol=1e-12)  # pixel i: index i of one window, i - 32 of the next
    assert np.array_equal(window_weights(64), np.outer(t, t))
    assert np.array_equal(edge_taper(8, floor=1.0), np.ones(8))  # floor 1: the plain mean


def blend_grid(height: int, width: int, window: int, stride: int, score: dict | float, floor: float = TAPER_FLOOR) -> np.ndarray:
    blender = Blender(height, width, window, floor)
    for r in window_offsets(height, stride, window):
        for c in window_offsets(width, stride, window):
            blender.add(r, c, score if isinstance(score, float) else score[r, c])
    return blender.result()


@pytest.mark.parametrize(("height", "width", "stride"), [(160, 128, 32), (100, 70, 24), (64, 64, 64), (130, 97, 17)])
def test_a_constant_score_gives_that_constant_everywhere_borders_included(height: int, width: int, stride: int) -> None:
    prob = blend_grid(height, width, 64, stride, 0.37)
    assert prob.dtype == np.float32 and np.isfinite(prob).all()
    np.testing.assert_allclose(prob, np.float32(0.37), rtol=0, atol=1e-7)


def test_a_pixel_is_the_weighted_mean_of_the_windows_covering_it_by_hand() -> None:
    # window 4, stride 2 on a 4 x 6 grid: windows at columns 0 and 2 (rows: 0 only)
    # t = sin^2(pi (i + 0.5) / 4) = [s, c, c, s] with s = sin^2(pi/8) = 0.146447, c = sin^2(3 pi/8) = 0.853553
    s, c = math.sin(math.pi / 8) ** 2, math.sin(3 * math.pi / 8) ** 2
    assert np.allclose(edge_taper(4), [s, c, c, s])
    prob = blend_grid(4, 6, 4, 2, {(0, 0): 0.2, (0, 2): 0.8})
    # column 2 is index 2 of the first window (weight c) and index 0 of the second (weight s); the
    # row weight is common to both and cancels: (c * 0.2 + s * 0.8) / (c + s) = 0.2878680
    assert prob[1, 2] == pytest.approx((c * 0.2 + s * 0.8) / (c + s), abs=1e-7)
    assert prob[1, 2] == pytest.approx(0.2878680, abs=1e-7)
    assert prob[1, 3] == pytest.approx((s * 0.2 + c * 0.8) / (c + s), abs=1e-7)
    assert prob[3, 0] == pytest.approx(0.2, abs=1e-7) and prob[0, 5] == pytest.approx(0.8, abs=1e-7)  # one window each


def test_border_pixels_covered_by_one_window_corner_take_its_value_and_uncovered_pixels_are_nan() -> None:
    blender = Blender(100, 100, 64)
    blender.add(0, 0, 0.9)
    blender.add(36, 36, 0.1)  # overlaps the first on rows/cols 36..63
    prob = blender.result()
    assert prob[0, 0] == pytest.approx(0.9) and prob[99, 99] == pytest.approx(0.1)  # corners: one window's corner pixel
    assert np.isnan(prob[0, 99]) and np.isnan(prob[99, 0])  # no window there: no data, not 0
    assert np.isfinite(prob[:64, :64]).all() and np.isfinite(prob[36:, 36:]).all()
    # the corner weight (floor^2 = 1e-6 at least) never turns into a division by zero
    assert Blender(64, 64, 64).weights.min() >= TAPER_FLOOR**2


def test_the_blend_removes_the_seams_that_the_plain_mean_shows() -> None:
    rng = np.random.default_rng(0)
    rows, cols = window_offsets(320, 32, 64), window_offsets(320, 32, 64)
    score = {(r, c): float(rng.random()) for r in rows for c in cols}
    bounds = window_boundaries(cols, 64)
    flat = blend_grid(320, 320, 64, 32, score, floor=1.0)
    blended = blend_grid(320, 320, 64, 32, score)
    flat_across, flat_inside = neighbour_jumps(flat, bounds, axis=1)
    across, inside = neighbour_jumps(blended, bounds, axis=1)
    assert flat_inside == 0.0 and flat_across > 0.2  # the plain mean is flat inside blocks and steps between them
    assert across < flat_across / 5  # the blend: no step at window edges ...
    assert across <= 1.5 * inside  # ... no larger than the jumps anywhere else


# ----------------------------------------------------------------------------------------------
# Scoring: batched views against the pipeline's path, strip preprocessing


def tiny_bundle(head: str, tta: int, n_channels: int = 12) -> Bundle:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    params = ModelParams("test_efficientnet", False, None, 32, 0.0)
    networks = []
    for fold in range(3):
        torch.manual_seed(fold)
        networks.append(create_model(params, n_channels).eval())
    heads: list = [None] * 3
    if head == "svm":
        rng = np.random.default_rng(1)
        dim = networks[0].num_features
        heads = [make_pipeline(StandardScaler(), SVC(C=0.1)).fit(rng.normal(size=(20, dim)), np.repeat([0, 1], 10)) for _ in range(3)]
    manifest = {
        "tta": tta, "input_size": 32, "head": head, "threshold": 0.5, "optical_scale": 10000.0, "patch_size": 64,
        "bands": BANDS, "n_channels": n_channels,
        "normalization": {"center": [0.1] * n_channels, "scale": [2.0] * n_channels},
    }
    return Bundle(path=Path("tiny"), manifest=manifest, networks=networks, heads=heads)


def raw_patches(n: int, seed: int = 0, height: int = 64, width: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = rng.normal(0.0, 1.0, size=(n, 12, height, width)).astype(np.float32)
    raw[:, :4] = (np.abs(raw[:, :4]) * 0.05 + 0.1) * 10000.0  # digital numbers
    return raw


@pytest.mark.parametrize(("head", "tta"), [("svm", 8), ("fc", 4), ("fc", 1)])
def test_batched_views_score_bit_for_bit_as_the_pipelines_predict(head: str, tta: int) -> None:
    from landslide_dvc.core.heads import head_scores

    bundle = tiny_bundle(head, tta)
    images = torch.from_numpy(bundle.preprocess(raw_patches(11)))
    device = torch.device("cpu")
    expected = np.stack(
        [
            head_scores(head, model, *predict(net, images, 32, device, 4, with_features=head != "fc", tta=tta)[::-1])
            for net, model in zip(bundle.networks, bundle.heads)
        ],
        axis=1,
    ).mean(axis=1)
    assert np.array_equal(bundle.score_inputs(images, device, 4), expected)  # 3 batches: 4, 4, 3


@pytest.mark.parametrize(("head", "tta"), [("svm", 8), ("fc", 4)])
def test_the_votes_are_each_folds_head_on_each_views_own_features(head: str, tta: int) -> None:
    from landslide_dvc.core.heads import head_scores
    from landslide_dvc.core.inference import dihedral_views

    bundle = tiny_bundle(head, tta)
    images = torch.from_numpy(bundle.preprocess(raw_patches(5)))
    device = torch.device("cpu")
    scores, votes = bundle.score_with_votes(images, device, 2)
    assert np.array_equal(scores, bundle.score_inputs(images, device, 2)) and votes.shape == (5, 3 * tta)
    for k, (net, model) in enumerate(zip(bundle.networks, bundle.heads)):
        for v, view in enumerate(dihedral_views(images, tta)):  # one view at a time, through the pipeline's predict
            prob, features = predict(net, view.contiguous(), 32, device, 5, with_features=head != "fc")
            np.testing.assert_allclose(votes[:, k * tta + v], head_scores(head, model, features, prob), rtol=0, atol=1e-6)
    if head == "fc":  # the fc head's score is its views' mean probability: the votes average to it
        np.testing.assert_allclose(votes.mean(axis=1), scores, rtol=0, atol=1e-6)
    spread = bundle.predict_tiles(images.numpy(), device, 2).spread
    np.testing.assert_allclose(spread[:, 7, 9], votes.std(axis=1), rtol=0, atol=1e-6)


def test_the_uncertainty_is_0_where_every_vote_agrees_and_the_votes_spread_by_hand() -> None:
    blender = Blender(96, 96, 64, with_spread=True)
    agreeing = np.full((64, 64), 0.3)
    blender.add(0, 0, agreeing)
    blender.add(0, 32, agreeing)  # every vote of both windows is 0.3
    spread = np.full((64, 64), 0.2)
    blender.add(32, 0, np.full((64, 64), 0.9), spread)  # a window whose votes disagree, over the rows 32-95
    u = blender.uncertainty()
    assert (u[:32, :] == 0).all() and np.isnan(u[64:, 64:]).all()  # agreement: exactly 0; no window: NaN
    # a pixel of all three windows: the weighted variance of the mixture of their votes
    weights = blender.weights
    r, c = 40, 40
    w = np.array([weights[r, c], weights[r, c - 32], weights[r - 32, c]])
    m, s = np.array([0.3, 0.3, 0.9]), np.array([0.0, 0.0, 0.2])
    p = (w * m).sum() / w.sum()
    assert blender.result()[r, c] == pytest.approx(p, abs=1e-6)
    assert u[r, c] == pytest.approx(math.sqrt((w * (s**2 + (m - p) ** 2)).sum() / w.sum()), abs=1e-6)
    # where one window alone covers a pixel, the uncertainty is that window's spread
    assert u[80, 10] == pytest.approx(0.2, abs=1e-6)


def test_tiles_whose_votes_all_agree_give_a_zero_spread() -> None:
    from landslide_dvc.serve.strips import vote_spread

    votes = np.full((4, 40), 0.1 + 0.2)  # a value with no exact binary form, repeated
    votes[1, 3] = 0.5
    spread = vote_spread(votes, axis=1)
    assert spread[0] == 0 and spread[2] == 0 and spread[3] == 0 and spread[1] > 0


@pytest.mark.parametrize("n_channels", [12, 20])
def test_a_strip_preprocessed_once_gives_the_windows_preprocessed_one_by_one(n_channels: int) -> None:
    bundle = tiny_bundle("fc", 1, n_channels)
    strip = raw_patches(1, height=64, width=200)[0]
    strip[:, 10, 180] = np.nan  # no-data pixels (outside these windows) are preprocessed too, silently
    cols = [0, 32, 64, 96]
    per_window = bundle.preprocess(np.stack([strip[:, :, c : c + 64] for c in cols]))
    assert np.array_equal(bundle.window_inputs(strip, cols), per_window)


def test_classifier_tiles_are_the_window_scores() -> None:
    bundle = tiny_bundle("fc", 1)
    inputs = bundle.preprocess(raw_patches(3))
    tiles = bundle.predict_tiles(inputs, torch.device("cpu"), 8)
    scores = bundle.score_inputs(torch.from_numpy(inputs), torch.device("cpu"), 8)
    assert tiles.probability.shape == (3, 64, 64) and all((tiles.probability[k] == scores[k]).all() for k in range(3))


class MeanModel:
    """A SceneModel whose windows predict, per pixel, band 0 / 10,000 (tiles differ inside a window)."""

    bands, window, threshold, window_combination = BANDS, 64, 0.5, "blend"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def check_scale(self, raw: np.ndarray, names: Sequence[str], source: str, *, whole: bool) -> None:
        pass

    def window_inputs(self, strip: np.ndarray, cols: Sequence[int]) -> np.ndarray:
        return np.stack([strip[0, :, c : c + 64] / 10000.0 for c in cols])

    def predict_tiles(self, inputs: np.ndarray, device: torch.device, batch_size: int) -> Tiles:
        self.batches.append(len(inputs))
        return Tiles(inputs, np.zeros_like(inputs))


def write_scene(path: Path, bands: np.ndarray, georef: Georef | None = UTM, nodata: float | None = None) -> None:
    profile = {"driver": "GTiff", "width": bands.shape[2], "height": bands.shape[1], "count": bands.shape[0], "dtype": "float32"}
    if georef is not None:
        profile.update(crs=georef.crs, transform=georef.transform)
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands.astype(np.float32))


def perfect_window_scores(truth: np.ndarray, window: int, stride: int) -> dict[tuple[int, int], float]:
    """What a perfect window classifier says: 1 where a window holds a landslide pixel, else 0."""
    offsets = range(0, truth.shape[0] - window + 1, stride)
    return {(r, c): float(truth[r : r + window, c : c + window].any()) for r in offsets for c in offsets}


def test_the_intersection_of_positive_windows_keeps_the_landslide_and_its_stride_wide_rim() -> None:
    window, stride = 64, 16
    truth = np.zeros((256, 256), bool)
    truth[100:112, 130:140] = True  # a 12 x 10 px landslide
    blender = Blender(256, 256, window)
    for (r, c), score in perfect_window_scores(truth, window, stride).items():
        blender.add(r, c, score)
    inside = blender.combined("intersection") >= 0.5
    blended = blender.combined("blend") >= 0.5
    assert inside[truth].all()  # every landslide pixel: every window over it holds the landslide
    rows, cols = np.nonzero(inside)  # the rest lies within a stride of it (window starts are a stride apart)
    assert rows.min() > 100 - stride and rows.max() < 112 + stride and cols.min() > 130 - stride and cols.max() < 140 + stride
    assert blended[truth].all() and blended.sum() > 10 * inside.sum()  # the blend lights up whole windows
    np.testing.assert_array_equal(blender.combined("blend"), blender.result())
    with pytest.raises(ValueError, match="unknown window combination 'median'"):
        blender.combined("median")


def test_the_intersection_is_the_lowest_covering_tile_and_nan_where_none() -> None:
    blender = Blender(4, 6, 4)
    blender.add(0, 0, np.full((4, 4), 0.9))
    blender.add(0, 2, np.full((4, 4), 0.2))
    out = blender.intersection()
    np.testing.assert_array_equal(out[:, :2], np.float32(0.9))
    np.testing.assert_array_equal(out[:, 2:], np.float32(0.2))
    assert out.dtype == np.float32
    assert np.isnan(Blender(2, 2, 2).intersection()).all()


def test_the_classifier_maps_by_intersection_and_predicts_windows_option_overrides_it() -> None:
    from landslide_dvc.serve.predict import map_tags

    bundle = tiny_bundle("fc", 1)
    assert bundle.window_combination == "intersection"
    assert map_tags(bundle, 32, TAPER_FLOOR)["LANDSLIDE_BLEND"].startswith("intersection: each pixel's probability is the lowest")
    bundle.override_window_combination("blend")
    assert bundle.window_combination == "blend"
    assert map_tags(bundle, 32, TAPER_FLOOR)["LANDSLIDE_BLEND"].startswith("Hann window weights at pixel centres")


def test_score_scene_scores_full_batches_skips_no_data_and_blends_pixel_tiles(tmp_path: Path) -> None:
    bands = raw_patches(1, height=160, width=200)[0]
    bands[:, 150, 5] = -9999.0
    write_scene(tmp_path / "s.tif", bands, nodata=-9999.0)
    model = MeanModel()
    with open_scene(tmp_path / "s.tif", BANDS, 64) as src:
        result = score_scene(src, model, 32, torch.device("cpu"), 5, "s.tif")
    rows, cols = window_offsets(160, 32, 64), window_offsets(200, 32, 64)
    assert result.n_windows == len(rows) * len(cols) == 4 * 6
    assert result.n_scored == 23  # window (96, 0) holds the no-data pixel
    assert model.batches == [5, 5, 5, 5, 3]  # full batches across strips, the rest at the end
    expected = Blender(160, 200, 64)
    for r in rows:
        for c in cols:
            if (r, c) != (96, 0):
                expected.add(r, c, bands[0, r : r + 64, c : c + 64] / 10000.0)
    np.testing.assert_array_equal(result.probability, expected.result())
    assert np.isnan(result.probability[150, 5]) and np.isnan(result.probability[140, 10])


# ----------------------------------------------------------------------------------------------
# Bad inputs


def test_one_patch_at_another_scale_is_found_on_its_own() -> None:
    raw = raw_patches(6)
    raw[3, :4] /= 10000.0  # reflectance among digital numbers
    assert scale_misfits(raw, 10000.0).tolist() == [False, False, False, True, False, False]
    dark = raw_patches(2)
    dark[0, :4] = 30.0  # a dark DN patch (water, shadow): fits no scale, is not refused
    dark[1] = 0.0
    assert not scale_misfits(dark, 10000.0).any()
    reflectance = raw_patches(3)
    reflectance[:, :4] /= 10000.0
    reflectance[1, :4] *= 10000.0
    assert scale_misfits(reflectance, 1.0).tolist() == [False, True, False]


def test_the_scale_error_names_the_patch_and_says_how_to_fix_it() -> None:
    bundle = tiny_bundle("fc", 1)
    raw = raw_patches(40)
    raw[17, :4] /= 10000.0
    names = [f"patch ID_{k}" for k in range(40)]
    with pytest.raises(DataError) as exc:
        bundle.check_scale(raw, names, "new_patches", whole=True)  # the chunk as a whole passes
    message = str(exc.value)
    assert message.startswith("new_patches: patch ID_17 looks like reflectance (99th percentile ")
    assert "not the bundle's optical_scale 10000; multiply its optical bands by 10000" in message
    assert "\n" not in message


def gcp_scene(path: Path) -> None:
    from rasterio.control import GroundControlPoint

    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=12, dtype="float32") as dst:
        dst.write(raw_patches(1)[0])
        gcps = [GroundControlPoint(0, 0, 15.0, 37.0), GroundControlPoint(0, 64, 15.01, 37.0), GroundControlPoint(64, 0, 15.0, 36.99)]
        dst.gcps = (gcps, CRS.from_epsg(4326))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("gcps", "is located only by 3 ground control points (no CRS and geotransform), so a map would land at 0 deg, 0 deg; "
                 "warp it first (`gdalwarp -r bilinear"),
        ("bare", "has no georeference (no CRS, no geotransform); give a georeferenced GeoTIFF"),
        ("no_crs", "has a geotransform but no CRS; set it first (`gdal_edit.py -a_srs EPSG:<code>"),
        ("bands", "has 11 bands, the bundle expects 12 (Red, Green, Blue, NIR, ..., ADVH, in this order)"),
    ],
)
def test_scenes_without_a_usable_georeference_or_bands_are_refused(tmp_path: Path, case: str, message: str) -> None:
    path = tmp_path / "s.tif"
    if case == "gcps":
        gcp_scene(path)
    elif case == "bare":
        write_scene(path, raw_patches(1)[0], georef=None)
    elif case == "no_crs":
        with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=12, dtype="float32", transform=UTM.transform) as dst:
            dst.write(raw_patches(1)[0])
    else:
        write_scene(path, raw_patches(1)[0][:11])
    with pytest.raises(DataError) as exc:
        open_scene(path, BANDS, 64)
    assert message in str(exc.value) and str(path) in str(exc.value) and "\n" not in str(exc.value)


# ----------------------------------------------------------------------------------------------
# Outputs


def test_the_map_is_a_cloud_optimized_geotiff_with_overviews_nodata_and_the_scenes_grid(tmp_path: Path) -> None:
    prob = np.random.default_rng(0).random((300, 520)).astype(np.float32)
    prob[:40, :50] = np.nan
    write_cog(tmp_path / "m.tif", prob, UTM, {"LANDSLIDE_THRESHOLD": "0.5"})
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.profile["tiled"] and src.block_shapes == [(256, 256)] and src.dtypes == ("float32",)
        assert src.overviews(1) == [2, 4] and overview_count(300, 520) == 2
        assert math.isnan(src.nodata) and src.crs == UTM.crs and src.transform == UTM.transform
        assert src.tags()["LANDSLIDE_THRESHOLD"] == "0.5"
        assert np.array_equal(src.read(1), prob, equal_nan=True)
        assert src.read_masks(1)[:40, :50].max() == 0 and src.read_masks(1)[40:, 50:].min() == 255
    assert overview_count(100, 60) == 1  # small maps get one level too


def test_the_uncertainty_is_the_cogs_second_band_and_each_polygons_mean(tmp_path: Path) -> None:
    from landslide_dvc.core.geo import read_features

    prob = blob_map()
    uncertainty = np.where(np.isnan(prob), np.nan, 0.05).astype(np.float32)
    uncertainty[5:10, 5:10] = 0.25  # half of the first region's 50 px
    n = write_map_outputs(SceneMap(prob, UTM, 0.5, {}, uncertainty), MapFiles(tmp_path / "m.tif", tmp_path / "m.gpkg"))
    with rasterio.open(tmp_path / "m.tif") as src:
        assert src.count == 2 and src.descriptions == ("landslide probability", "uncertainty (standard deviation of the votes)")
        assert np.array_equal(src.read(2), uncertainty, equal_nan=True)
    _, columns, _ = read_features(tmp_path / "m.gpkg", ["mean_uncertainty"])
    assert n == 2 and sorted(columns["mean_uncertainty"].round(6)) == [0.05, 0.15]


def blob_map() -> np.ndarray:
    prob = np.zeros((50, 60), np.float32)
    prob[5:10, 5:15] = 0.8  # 50 px
    prob[7, 7] = 0.95
    prob[30:34, 40:43] = 0.6  # 12 px
    prob[30, 43] = 0.4  # below the threshold
    prob[40:, :] = np.nan
    return prob


def test_regions_have_their_area_mean_and_max_probability() -> None:
    regions = find_regions(blob_map(), 0.5, UTM)
    assert len(regions) == 2
    order = np.argsort(-regions.area_m2)
    assert regions.area_m2[order].tolist() == [50 * 100.0, 12 * 100.0]  # 10 m pixels
    assert regions.mean_prob[order][0] == pytest.approx((49 * 0.8 + 0.95) / 50)
    assert regions.max_prob[order].tolist() == pytest.approx([0.95, 0.6])
    assert regions.mean_prob[order][1] == pytest.approx(0.6)
    big = regions.geometries[order[0]]
    assert big.area == pytest.approx(5000.0)
    assert big.bounds == (500050.0, 4100000.0 - 100.0, 500150.0, 4100000.0 - 50.0)


def test_areas_on_a_geographic_crs_are_in_square_metres() -> None:
    georef = Georef(CRS.from_epsg(4326), from_origin(15.0, 37.0, 1e-4, 1e-4))  # ~8.9 x 11.1 m pixels at 37 N
    regions = find_regions(blob_map(), 0.5, georef)
    expected = 6_371_008.8**2 * math.radians(1e-4) ** 2 * math.cos(math.radians(37.0 - 7.5e-4))
    assert sorted(regions.area_m2) == pytest.approx([12 * expected, 50 * expected], rel=1e-4)


def test_polygons_keep_the_crs_in_a_geopackage_and_are_wgs84_in_geojson(tmp_path: Path) -> None:
    import pyogrio
    from pyogrio.raw import read
    from rasterio.warp import transform as reproject

    regions = find_regions(blob_map(), 0.5, UTM)
    write_polygons(tmp_path / "p.gpkg", regions, UTM)
    write_polygons(tmp_path / "p.geojson", regions, UTM)
    info = pyogrio.read_info(tmp_path / "p.gpkg")
    assert info["crs"] == "EPSG:32633" and info["features"] == 2 and info["geometry_type"] == "Polygon"
    assert list(info["fields"]) == ["area_m2", "mean_prob", "max_prob", "mean_uncertainty"] and info["layer_name"] == "landslides"
    _, _, _, fields = read(tmp_path / "p.gpkg")
    assert sorted(fields[0].tolist()) == [1200.0, 5000.0]
    web = pyogrio.read_info(tmp_path / "p.geojson")
    assert web["crs"] == "EPSG:4326" and web["features"] == 2
    (lon,), (lat,) = reproject(UTM.crs, "EPSG:4326", [500050.0], [4100000.0 - 50.0])
    west, _, _, north = web["total_bounds"]
    assert west == pytest.approx(lon, abs=1e-6) and north == pytest.approx(lat, abs=1e-6)


def test_no_region_gives_an_empty_layer(tmp_path: Path) -> None:
    import pyogrio

    n = write_map_outputs(SceneMap(np.zeros((64, 64), np.float32), UTM, 0.5, {}), MapFiles(tmp_path / "m.tif", tmp_path / "m.gpkg"))
    assert n == 0 and pyogrio.read_info(tmp_path / "m.gpkg")["features"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gpkg", "m.tif"]


def test_the_outputs_are_written_together_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from landslide_dvc.serve import maps

    def broken(path: Path, *_: object) -> None:
        path.write_bytes(b"half")
        raise OSError("disk gone")

    monkeypatch.setattr(maps, "write_polygons", broken)
    with pytest.raises(OSError, match="disk gone"):
        write_map_outputs(SceneMap(blob_map(), UTM, 0.5, {}), MapFiles(tmp_path / "m.tif", tmp_path / "m.gpkg"))
    assert list(tmp_path.iterdir()) == []
