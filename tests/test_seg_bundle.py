"""The segmentation bundle: `export_seg` writes the U-Net with its manifest, `load_bundle` loads it
as a `SegBundle`, its tiles are the pipeline's U-Net probabilities (one view, or the mean of the
dihedral views), and `landslide-dvc predict` maps a 14-band scene with it or refuses, in one line,
what would give a wrong map. A tiny U-Net on stand-in bands rescaled as the release keeps it fast."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.transform import from_origin

from landslide_dvc.cli import main
from landslide_dvc.core.bands import L4S_BANDS
from landslide_dvc.core.bundle_files import CLASSIFIER, MANIFEST, SEGMENTATION, bundle_kind
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.geo import Georef, read_features
from landslide_dvc.core.inference import dihedral_views
from landslide_dvc.core.io import file_sha256
from landslide_dvc.core.l4s_channels import derive_l4s_channels, l4s_channel_names
from landslide_dvc.core.mapping_rules import MappingRules, tune_rules
from landslide_dvc.core.scaling import apply_statistics, fit_statistics
from landslide_dvc.core.segmentation import SegData, SegParams, build_unet, predict_probabilities
from landslide_dvc.formats.l4s import load_l4s_split
from landslide_dvc.pipeline.export_seg import ExportSegParams, RuleTuningParams, run_export_seg
from landslide_dvc.serve.bundle import load_bundle
from landslide_dvc.serve.maps import find_regions
from landslide_dvc.serve.seg_bundle import SegBundle
from landslide_dvc.synthetic.stand_in_l4s import SynthesizeL4SParams, physical_bands, write_l4s_dataset

WINDOW = 32  # the tiny U-Net's patch size (depth 3: 32 px -> 4 px)
CPU = torch.device("cpu")
UTM = CRS.from_epsg(32633)
TRANSFORM = from_origin(500000.0, 4100000.0, 10.0, 10.0)  # 10 m pixels
GEOREF = Georef(UTM, TRANSFORM)
TINY = SegParams(
    encoder="tu-test_efficientnet", encoder_depth=3, decoder_channels=[16, 8, 4], loss="dice_bce", pos_weight=5.0,
    epochs=1, batch_size=4, lr=0.003, weight_decay=0.0, flips=True, threshold=0.4, val_fold=0, n_examples=1,
    eval_batch_size=8, seed=0, device="cpu", threads=1,
)
STAND_IN = SynthesizeL4SParams(
    n_train=6, n_valid=1, n_test=1, size=64, seed=3, train_prior=0.5, test_prior=0.5, cloud_fraction=0.0,
    hard_negative_fraction=0.5, region_shift=0.5, scar_scale=1.8, scar_site_candidates=8, vegetation_offset=1.0,
    haze_blue=[0.01, 0.04], eval_masks=False,
)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny U-Net's unet.pt and a train.h5 (stand-in bands at the release's scale), exported with tta 8."""
    root = tmp_path_factory.mktemp("seg")
    write_l4s_dataset(root / "stand_in", STAND_IN)
    raw = load_l4s_split(root / "stand_in", "TrainData", masks_required=True).images  # (6, 14, 64, 64), release scale
    patches = raw.reshape(6, 14, 2, WINDOW, 2, WINDOW).transpose(0, 2, 4, 1, 3, 5).reshape(-1, 14, WINDOW, WINDOW)
    images = derive_l4s_channels(patches.copy(), 14)
    center, scale = fit_statistics(images, "standard")
    apply_statistics(images, center, scale)
    train_path = root / "train.h5"
    with h5py.File(train_path, "w") as h5:  # the attributes normalize writes that export_seg reads
        h5.create_dataset("images", data=images)
        h5.create_dataset("ids", data=np.array([f"image_{k}" for k in range(len(images))], dtype=object), dtype=h5py.string_dtype())
        for key, value in {"channels": l4s_channel_names(14), "method": "standard", "center": center, "scale": scale,
                           "format": "l4s", "patch_size": WINDOW}.items():
            h5.attrs[key] = value
    torch.manual_seed(0)
    network = build_unet(TINY, in_chans=14).eval()
    meta = {"encoder": TINY.encoder, "encoder_depth": TINY.encoder_depth, "decoder_channels": list(TINY.decoder_channels),
            "in_chans": 14, "channels": l4s_channel_names(14), "size": WINDOW, "threshold": TINY.threshold}
    model_path = root / "unet.pt"
    torch.save({"state_dict": network.state_dict(), "meta": meta}, model_path)
    manifest = run_export_seg(ExportSegParams(tta=8), model_path=model_path, train_path=train_path, out_dir=root / "bundle")
    return {"root": root, "raw": raw, "bundle": root / "bundle", "manifest": manifest, "network": network,
            "center": center, "scale": scale}


def with_tta(bundle: SegBundle, tta: int) -> SegBundle:
    return SegBundle(path=bundle.path, manifest={**bundle.manifest, "tta": tta}, network=bundle.network)


def write_scene(path: Path, bands: np.ndarray, nodata: float | None = None) -> None:
    profile = {"driver": "GTiff", "width": bands.shape[2], "height": bands.shape[1], "count": bands.shape[0],
               "dtype": "float32", "crs": UTM, "transform": TRANSFORM}
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands.astype(np.float32))


def scene_bands(raw: np.ndarray) -> np.ndarray:
    """Three stand-in images side by side and two below: a (14, 128, 192) scene at the release's scale."""
    rows = [np.concatenate(list(raw[k : k + 3]), axis=2) for k in (0, 3)]
    return np.concatenate(rows, axis=1)


def predict(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["predict", *argv, "--device", "cpu"])
    return code, capsys.readouterr().err.strip().splitlines()[-1] if code else ""


# ----------------------------------------------------------------------------------------------
# Export and loading


def test_the_manifest_records_kind_bands_statistics_window_architecture_and_sha256(made: dict) -> None:
    manifest = json.loads((made["bundle"] / MANIFEST).read_text())
    assert manifest == made["manifest"]
    assert manifest["kind"] == SEGMENTATION and manifest["format"] == 1
    assert manifest["bands"] == list(L4S_BANDS) and manifest["channels"] == l4s_channel_names(14)
    assert manifest["normalization"] == {"method": "standard", "center": made["center"].tolist(), "scale": made["scale"].tolist()}
    assert (manifest["window"], manifest["threshold"], manifest["tta"]) == (WINDOW, 0.4, 8)
    assert manifest["architecture"] == {"model": "segmentation_models_pytorch.Unet", "encoder": "tu-test_efficientnet",
                                        "encoder_depth": 3, "decoder_channels": [16, 8, 4], "in_chans": 14, "classes": 1}
    assert manifest["files"] == {"unet.safetensors": file_sha256(made["bundle"] / "unet.safetensors")}
    assert sorted(p.name for p in made["bundle"].iterdir()) == [MANIFEST, "unet.safetensors"]  # nothing pickled


def test_load_bundle_gives_a_seg_bundle_and_reads_kindless_manifests_as_classifiers(made: dict) -> None:
    bundle = load_bundle(made["bundle"])
    assert isinstance(bundle, SegBundle)
    assert (bundle.kind, bundle.bands, bundle.window, bundle.threshold, bundle.tta) == (SEGMENTATION, list(L4S_BANDS), WINDOW, 0.4, 8)
    reference = made["network"].state_dict()
    assert all(torch.equal(bundle.network.state_dict()[k], reference[k]) for k in reference)
    assert bundle_kind(made["bundle"], {}) == CLASSIFIER  # bundles exported before the kind existed
    with pytest.raises(DataError, match="has kind 'detector'; predict loads 'classifier' and 'segmentation' bundles"):
        bundle_kind(made["bundle"], {"kind": "detector"})


def test_a_tampered_weights_file_is_refused(made: dict, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(made["bundle"], copy)
    data = bytearray((copy / "unet.safetensors").read_bytes())
    data[-5] ^= 0xFF
    (copy / "unet.safetensors").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"unet\.safetensors does not match its sha256 .*export_seg") as exc:
        load_bundle(copy)
    assert "\n" not in str(exc.value)


# ----------------------------------------------------------------------------------------------
# Tiles: the pipeline's probabilities


def test_one_view_gives_the_pipelines_probabilities(made: dict) -> None:
    bundle = with_tta(load_bundle(made["bundle"]), 1)
    windows = made["raw"][:3, :, :WINDOW, :WINDOW]
    inputs = bundle.preprocess(windows)
    expected_inputs = apply_statistics(derive_l4s_channels(windows.copy(), 14), made["center"], made["scale"])
    np.testing.assert_array_equal(inputs, expected_inputs)  # normalize's arithmetic
    tiles = bundle.predict_tiles(inputs, CPU, 8)
    assert tiles.probability.shape == (3, WINDOW, WINDOW) and tiles.probability.dtype == np.float32
    np.testing.assert_array_equal(tiles.probability, predict_probabilities(made["network"], inputs, 8, CPU))
    assert (tiles.spread == 0).all()  # one view: one vote per pixel, nothing to disagree


def test_a_strip_preprocessed_once_gives_the_windows_preprocessed_one_by_one(made: dict) -> None:
    bundle = load_bundle(made["bundle"])
    strip = np.concatenate(list(made["raw"][:2, :, :WINDOW]), axis=2)  # (14, 32, 128)
    cols = [0, 16, 50, 96]
    one_by_one = bundle.preprocess(np.stack([strip[:, :, c : c + WINDOW] for c in cols]))
    np.testing.assert_array_equal(bundle.window_inputs(strip, cols), one_by_one)
    assert np.array_equal(strip, np.concatenate(list(made["raw"][:2, :, :WINDOW]), axis=2))  # the strip is not changed


@pytest.mark.parametrize("tta", [4, 8])
def test_the_views_in_one_pass_average_to_the_views_run_one_by_one(made: dict, tta: int) -> None:
    bundle = with_tta(load_bundle(made["bundle"]), tta)
    inputs = bundle.preprocess(made["raw"][:3, :, WINDOW:, WINDOW:])
    # where each pixel of a view comes from, by sending pixel numbers through the same views
    numbers = torch.arange(WINDOW * WINDOW).reshape(1, 1, WINDOW, WINDOW)
    sources = [view[0, 0].numpy().ravel() for view in dihedral_views(numbers, tta)]
    views = dihedral_views(torch.from_numpy(inputs), tta)
    undone = np.empty((tta, len(inputs), WINDOW * WINDOW))
    for k, (view, source) in enumerate(zip(views, sources)):
        prob = predict_probabilities(made["network"], np.ascontiguousarray(view.numpy()), 8, CPU).reshape(len(inputs), -1)
        undone[k][:, source] = prob  # back to the window's orientation
    expected = undone.mean(axis=0).reshape(len(inputs), WINDOW, WINDOW)
    tiles = bundle.predict_tiles(inputs, CPU, 2)
    np.testing.assert_allclose(tiles.probability, expected, rtol=0, atol=1e-6)
    assert not np.allclose(tiles.probability, with_tta(bundle, 1).predict_tiles(inputs, CPU, 2).probability, atol=1e-4)  # the views do differ
    # the uncertainty of a tile is the views' standard deviation, pixel by pixel
    np.testing.assert_allclose(tiles.spread, undone.std(axis=0).reshape(len(inputs), WINDOW, WINDOW), rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# predict on scenes


def test_a_scene_maps_to_a_cog_and_polygons_on_its_grid_with_nan_where_it_has_no_data(
    made: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bands = scene_bands(made["raw"])
    bands[:, 100:, 170:] = -9999.0  # a no-data corner: the windows over it are not scored
    write_scene(tmp_path / "scene.tif", bands, nodata=-9999.0)
    out = tmp_path / "map.tif"
    code, _ = predict(["--bundle", str(made["bundle"]), str(tmp_path / "scene.tif"), "--out", str(out)], capsys)
    assert code == 0
    assert (tmp_path / "map.gpkg").is_file()
    with rasterio.open(out) as src:
        prob = src.read(1)
        assert (src.crs, src.transform, src.shape) == (UTM, TRANSFORM, (128, 192))
        tags = src.tags()
    assert tags["LANDSLIDE_BUNDLE_KIND"] == SEGMENTATION and tags["LANDSLIDE_TTA_VIEWS"] == "8"
    assert tags["LANDSLIDE_THRESHOLD"] == "0.4" and "stride 16 px, window 32 px" in tags["LANDSLIDE_BLEND"]  # stride: window / 2
    finite = prob[np.isfinite(prob)]
    assert finite.size > 0.8 * prob.size and finite.min() >= 0.0 and finite.max() <= 1.0
    assert np.isnan(prob[120, 180]) and np.isfinite(prob[10, 10])


def test_where_one_window_covers_a_pixel_the_map_is_its_tile(made: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bands = made["raw"][0]  # 64 x 64: at stride 32, four windows side by side
    write_scene(tmp_path / "scene.tif", bands)
    code, _ = predict(["--bundle", str(made["bundle"]), str(tmp_path / "scene.tif"), "--out", str(tmp_path / "m.tif"),
                       "--stride", "32"], capsys)
    assert code == 0
    bundle = load_bundle(made["bundle"])
    with rasterio.open(tmp_path / "m.tif") as src:
        prob = src.read(1)
    for r in (0, 32):
        for c in (0, 32):
            tile = bundle.predict_tiles(bundle.preprocess(bands[None, :, r : r + 32, c : c + 32]), CPU, 4).probability[0]
            np.testing.assert_allclose(prob[r : r + 32, c : c + 32], tile, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("12 bands", "has 12 bands; the segmentation bundle needs the 14 Landslide4Sense bands (B1, B2, B3, B4, ..., DEM, "
                     "in this order): stack them into one 14-band GeoTIFF"),
        ("digital numbers", "the window at row 0, column 0 looks like Sentinel-2 digital numbers, not the Landslide4Sense "
                            "release's scale"),
        ("reflectance", "look like reflectance, not the Landslide4Sense release's scale (0.0% below -0.05"),
        ("folder", "is a folder, and the segmentation bundle"),
    ],
)
def test_inputs_that_would_give_a_wrong_map_stop_predict_in_one_line(
    made: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    bands = scene_bands(made["raw"])
    scene = tmp_path / "scene.tif"
    if case == "12 bands":
        write_scene(scene, bands[:12])
    elif case in ("digital numbers", "reflectance"):  # the stand-in's rescaling undone; DN = reflectance x 10,000
        bands[:12] = physical_bands(bands, band_axis=0)[:12] * (10000.0 if case == "digital numbers" else 1.0)
        write_scene(scene, bands)
    else:
        scene.mkdir()
    out = tmp_path / "map.tif"
    code, line = predict(["--bundle", str(made["bundle"]), str(scene), "--out", str(out)], capsys)
    assert code == 1 and message in line and str(scene) in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]  # no output, not even a partial one


# ----------------------------------------------------------------------------------------------
# Mapping rules chosen on validation patches


def test_export_chooses_the_rules_on_validation_patches_and_predict_applies_and_overrides_them(
    made: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = load_l4s_split(made["root"] / "stand_in", "TrainData", masks_required=True)
    with h5py.File(made["root"] / "train.h5") as h5:
        images = h5["images"][()]
    masks = split.masks.reshape(6, 2, WINDOW, 2, WINDOW).transpose(0, 1, 3, 2, 4).reshape(-1, WINDOW, WINDOW)
    validation = SegData(images, masks, images, masks, [f"image_{k}" for k in range(len(images))], l4s_channel_names(14), "hand-made")
    rules = RuleTuningParams(tune=True, thresholds=[0.2, 0.4, 0.6], min_areas_m2=[0.0, 500.0], slope_quantiles=[0.0, 0.1],
                             fill_holes_m2=0.0, pixel_size_m=10.0)
    manifest = run_export_seg(ExportSegParams(tta=8), model_path=made["root"] / "unet.pt", train_path=made["root"] / "train.h5",
                              out_dir=tmp_path / "bundle", rules=rules, validation=validation)
    chosen = manifest["tuning"]["object"]
    assert manifest["threshold"] == chosen["threshold"] and manifest["tuning"]["validation"] == "hand-made"
    bundle = load_bundle(tmp_path / "bundle")  # the sha256s still hold after the manifest gained the rules
    assert bundle.rules == MappingRules(chosen["threshold"], chosen["min_area_m2"], chosen["min_slope"], 0.0)
    probability = bundle.predict_tiles(images, CPU, 4).probability
    slope = images[:, 12] * np.float32(made["scale"][12]) + np.float32(made["center"][12])
    assert tune_rules(probability, masks, 100.0, rules.grid(), slope)["object"] == chosen  # the validation maximum

    write_scene(tmp_path / "scene.tif", scene_bands(made["raw"]))
    args = ["--bundle", str(tmp_path / "bundle"), str(tmp_path / "scene.tif"), "--out", str(tmp_path / "m.tif")]
    assert predict([*args, "--no-slope-rule", "--min-area", "0", "--fill-holes", "0"], capsys)[0] == 0
    with rasterio.open(tmp_path / "m.tif") as src:
        tags, prob = src.tags(), src.read(1)
    assert tags["LANDSLIDE_RULES"] == f"polygons: {MappingRules(chosen['threshold']).describe()}"
    _, columns, _ = read_features(tmp_path / "m.gpkg", ["area_m2"])
    assert len(columns["area_m2"]) == len(find_regions(prob, chosen["threshold"], GEOREF))  # the threshold alone
    assert predict([*args, "--min-area", "1e12"], capsys)[0] == 0  # no polygon is that large
    assert len(read_features(tmp_path / "m.gpkg", ["area_m2"])[1]["area_m2"]) == 0
    code, message = predict([*args, "--min-slope", "1", "--no-slope-rule"], capsys)
    assert code != 0 and message.endswith("give --min-slope or --no-slope-rule, not both")
