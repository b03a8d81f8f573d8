"""The model bundle (`export`) and `landslide-dvc predict` on patch folders, Zindi folders and GeoTIFF scenes.

A micro pipeline is run in-process once per module (normalize, smote, random-weight fold networks,
extract_embeddings, fit_head@svm/lgbm, submit, export): the bundle then has to reproduce the
pipeline's own scores and submission exactly.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import runpy
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, make_zindi
from helpers import files_under, run_stage_script, write_params

from landslide_dvc.cli import main as landslide
from landslide_dvc.core.bundle_files import MANIFEST
from landslide_dvc.core.checkpoint import write_checkpoint
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.inference import predict
from landslide_dvc.core.io import file_sha256
from landslide_dvc.core.model import ModelParams, create_model
from landslide_dvc.pipeline.h5data import load_parts
from landslide_dvc.serve.bundle import bundle_parts_scores, load_bundle

N_FOLDS = 5


def run_stage(repo: Path, name: str, *args: str) -> None:
    """stages/<name>.py as DVC runs it (from the repository root), in this process."""
    cwd, argv = os.getcwd(), sys.argv
    os.chdir(repo)
    sys.argv = [f"stages/{name}.py", *args]
    try:
        runpy.run_path(str(REPO_ROOT / "stages" / f"{name}.py"), run_name="__main__")
    except SystemExit as exc:
        assert not exc.code, f"stage {name} failed"
    finally:
        os.chdir(cwd)
        sys.argv = argv


def write_random_folds(repo: Path, params: ModelParams, channels: list[str]) -> None:
    """Fold networks with seeded random weights (the bundle's job is to carry them, not to be good)."""
    for fold in range(N_FOLDS):
        torch.manual_seed(fold)
        model = create_model(params, len(channels))
        meta = {"backbone": params.backbone, "in_chans": len(channels), "num_classes": 2, "dim": params.dim,
                "drop_rate": params.drop_rate, "channels": channels, "fold": fold}
        (repo / "models").mkdir(exist_ok=True)
        write_checkpoint(repo / f"models/fold_{fold}.pt", model.state_dict(), meta)


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository after normalize .. export, with both trained heads and a repeated test ID."""
    repo = tmp_path_factory.mktemp("bundle") / "repo"
    make_zindi(repo / "data" / "zindi", n_train=40, n_test=12, n_pos=12, repeat_test=3)
    write_params(
        repo / "params.yaml",
        data={"dir": "data/zindi", "optical_scale": 10000},
        smote={"k": 2, "n_syn": 1},
        embed={"batch_size": 16, "device": "cpu", "tta": 4},
        head={"threshold": "oof", "lgbm": {"n_estimators": 10, "num_leaves": 4, "min_child_samples": 2, "n_jobs": 1}},
        submit={"head": "svm"},
    )
    for stage in ("normalize", "smote"):
        run_stage(repo, stage)
    with h5py.File(repo / "data/normalized/train.h5") as h5:
        channels = [str(c) for c in h5.attrs["channels"]]
    write_random_folds(repo, ModelParams("test_efficientnet", False, None, 32, 0.0), channels)
    run_stage(repo, "extract_embeddings")
    for head in ("svm", "lgbm", "logreg"):
        run_stage(repo, "fit_head", "--head", head)
    run_stage(repo, "submit")
    run_stage(repo, "export")
    return repo


def error_line(err: str) -> str:
    """The one error line `landslide-dvc predict` printed (after any progress-bar output)."""
    lines = [line.split("\r")[-1] for line in err.strip().splitlines()]
    errors = [line for line in lines if line.startswith("landslide-dvc predict: error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    return errors[0]


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def test_manifest_records_preprocessing_and_hashes(micro: Path) -> None:
    manifest = json.loads((micro / "models/bundle" / MANIFEST).read_text())
    with h5py.File(micro / "data/normalized/train.h5") as h5:
        assert manifest["normalization"]["center"] == h5.attrs["center"].tolist()
        assert manifest["normalization"]["scale"] == h5.attrs["scale"].tolist()
        assert manifest["channels"] == [str(c) for c in h5.attrs["channels"]]
    assert manifest["optical_scale"] == 10000.0 and manifest["n_folds"] == N_FOLDS and manifest["tta"] == 4
    assert manifest["head"] == "svm" and manifest["backbone"] == "test_efficientnet" and manifest["input_size"] == 32
    files = sorted(str(p.relative_to(micro / "models/bundle")) for p in (micro / "models/bundle").rglob("*") if p.is_file())
    assert sorted(manifest["files"]) == [f for f in files if f != MANIFEST]
    assert all(manifest["files"][f] == file_sha256(micro / "models/bundle" / f) for f in manifest["files"])
    assert not any(f.endswith((".pt", ".pkl", ".pickle", ".joblib")) for f in files)


def test_the_bundle_is_readable_by_other_accounts(micro: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    bundle = micro / "models" / "bundle"
    modes = {str(p.relative_to(bundle)): p.stat().st_mode & 0o777 for p in [bundle, *bundle.rglob("*")]}
    assert any(name.startswith("folds/") and name.endswith(".safetensors") for name in modes)
    assert modes == {name: (0o777 if (bundle / name).is_dir() else 0o666) & ~mask for name in modes}


@pytest.mark.parametrize("head", ["svm", "lgbm", "logreg"])
def test_bundle_heads_give_fit_heads_scores_on_the_same_embeddings(micro: Path, head: str, tmp_path: Path) -> None:
    from landslide_dvc.core.params import read_section
    from landslide_dvc.pipeline.export import run_export
    from landslide_dvc.pipeline.fit_head import HeadParams

    out = tmp_path / "bundle"
    cwd = os.getcwd()
    os.chdir(micro)
    try:
        run_export(
            head, read_section(HeadParams, "head"), 4, train_path=Path("data/normalized/train.h5"),
            model_paths=[Path(f"models/fold_{k}.pt") for k in range(N_FOLDS)],
            embedding_paths=[Path(f"data/embeddings/fold_{k}.h5") for k in range(N_FOLDS)],
            predictions_path=Path(f"data/heads/{head}.h5"), out_dir=out,
        )
    finally:
        os.chdir(cwd)
    bundle = load_bundle(out)
    tests = [load_parts(micro / f"data/embeddings/fold_{k}.h5")["test"] for k in range(N_FOLDS)]
    with h5py.File(micro / f"data/heads/{head}.h5") as h5:
        assert np.array_equal(bundle_parts_scores(bundle, tests), h5["test/score"][()])
        assert bundle.threshold == float(h5.attrs["threshold"])


def test_export_refuses_heads_that_do_not_reproduce_fit_head(
    micro: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = Path(shutil.copytree(micro, tmp_path / "repo", symlinks=True))
    shutil.rmtree(repo / "models/bundle")
    with h5py.File(repo / "data/heads/svm.h5", "r+") as h5:
        h5["test/fold_scores"][0, 2] = np.nextafter(h5["test/fold_scores"][0, 2], 2.0)  # one ulp off
    before = files_under(repo)
    code, err = run_stage_script("export", repo, monkeypatch, capsys)
    assert code == 1 and err.strip().count("\n") == 0, err
    assert "export: error: the svm head refitted for fold 2 and saved does not reproduce data/heads/svm.h5 exactly" in err
    assert files_under(repo) == before  # no bundle, no partial folder


def test_bundle_networks_reproduce_the_embeddings_stage(micro: Path) -> None:
    bundle = load_bundle(micro / "models/bundle")
    with h5py.File(micro / "data/normalized/test.h5") as h5:
        images = torch.from_numpy(h5["images"][()])
    part = load_parts(micro / "data/embeddings/fold_2.h5")["test"]
    prob, features = predict(bundle.networks[2], images, 32, torch.device("cpu"), 16, with_features=True, tta=4)
    np.testing.assert_allclose(prob, part.prob, rtol=0, atol=1e-6)
    np.testing.assert_allclose(features, part.features, rtol=0, atol=1e-5)


def test_predict_on_the_zindi_folder_reproduces_the_submission(micro: Path, tmp_path: Path) -> None:
    out = tmp_path / "submission.csv"
    assert landslide(["predict", "--bundle", str(micro / "models/bundle"), str(micro / "data/zindi"),
                      "--out", str(out), "--device", "cpu", "--batch-size", "7"]) == 0
    expected = read_csv(micro / "submissions/submission.csv")
    assert read_csv(out) == expected
    assert len(expected) == 1 + 13  # the repeated test ID written twice, as the sample file lists it


@pytest.mark.slow
def test_predict_on_the_pipelines_own_test_folder_reproduces_its_submission(built: Path, tmp_path: Path) -> None:
    from pipeline import run

    out = tmp_path / "submission.csv"
    result = run(built, sys.executable, "-m", "landslide_dvc", "predict", "data/synthetic", "--out", str(out))
    assert "landslide-dvc predict: 30 submission rows" in result.stdout  # MICRO's n_test rows, the repeat included
    assert out.read_text() == (built / "submissions/submission.csv").read_text()


def test_predict_on_a_patch_folder(micro: Path, tmp_path: Path) -> None:
    folder = tmp_path / "patches"
    source = sorted((micro / "data/zindi/test_data").glob("*.npy"))
    for k, path in enumerate(source):
        target = folder / ("a" if k % 2 else "b/c") / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    out = tmp_path / "scores.csv"
    assert landslide(["predict", "--bundle", str(micro / "models/bundle"), str(folder), "--out", str(out), "--device", "cpu"]) == 0
    rows = read_csv(out)
    assert rows[0] == ["ID", "probability", "label"]
    assert [r[0] for r in rows[1:]] == sorted(p.stem for p in source)
    with h5py.File(micro / "data/heads/svm.h5") as h5:
        ids = [s.decode() for s in h5["test/ids"][()]]
        expected = dict(zip(ids, h5["test/score"][()]))
        threshold = float(h5.attrs["threshold"])
    for sample_id, probability, label in rows[1:]:
        assert float(probability) == pytest.approx(expected[sample_id], abs=1e-6)
        assert int(label) == int(float(probability) >= threshold)


def test_predict_refuses_a_patch_of_the_wrong_shape(micro: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "p").mkdir()
    np.save(tmp_path / "p/ID_X.npy", np.zeros((12, 64, 64), np.float32))
    assert landslide(["predict", "--bundle", str(micro / "models/bundle"), str(tmp_path / "p"), "--out", str(tmp_path / "o.csv")]) == 1
    err = error_line(capsys.readouterr().err)
    assert "ID_X.npy has shape (12, 64, 64), expected (64, 64, 12)" in err
    assert not (tmp_path / "o.csv").exists()


def copy_bundle(micro: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(micro / "models/bundle", tmp_path / "bundle"))


def rehash(bundle: Path, name: str) -> None:
    """What an attacker who rewrites a file would also do: update its sha256 in the manifest."""
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def test_a_tampered_file_is_refused(micro: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(micro, tmp_path)
    weights = bundle / "folds/fold_1.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"fold_1.safetensors does not match its sha256"):
        load_bundle(bundle)


def test_pickled_weights_are_refused_even_with_a_matching_hash(micro: Path, tmp_path: Path) -> None:
    bundle = copy_bundle(micro, tmp_path)
    torch.save({"state_dict": {}, "payload": [1, 2]}, bundle / "folds/fold_0.safetensors")  # a pickle archive
    rehash(bundle, "folds/fold_0.safetensors")
    with pytest.raises(DataError, match=r"not a safetensors file"):
        load_bundle(bundle)


class Payload:
    """Stands for code an attacker wants run on load."""

    def __init__(self) -> None:
        self.command = "echo pwned"


def test_an_untrusted_type_in_a_skops_head_is_refused(micro: Path, tmp_path: Path) -> None:
    import skops.io as sio

    bundle = copy_bundle(micro, tmp_path)
    sio.dump({"model": Payload()}, bundle / "heads/fold_0.skops")
    rehash(bundle, "heads/fold_0.skops")
    with pytest.raises(DataError, match=r"fold_0.skops contains the untrusted type .*Payload; refusing"):
        load_bundle(bundle)


def test_a_missing_bundle_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert landslide(["predict", "--bundle", str(tmp_path / "none"), str(tmp_path), "--out", str(tmp_path / "o.csv")]) == 1
    assert "is not a model bundle (no manifest.json); build one with `dvc repro export`" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Scenes


def write_scene(path: Path, bands: np.ndarray, *, nodata: float | None = None, dtype: str = "float32") -> None:
    import rasterio
    from rasterio.transform import from_origin

    profile = {"driver": "GTiff", "width": bands.shape[2], "height": bands.shape[1], "count": bands.shape[0],
               "dtype": dtype, "crs": "EPSG:32633", "transform": from_origin(500000.0, 4100000.0, 10.0, 10.0)}
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands.astype(dtype))


def scene_bands(micro: Path, height: int, width: int) -> np.ndarray:
    """A scene stitched from the test patches (so its values have the data's own scales)."""
    patches = [np.load(p).transpose(2, 0, 1) for p in sorted((micro / "data/zindi/test_data").glob("*.npy"))]
    rng = np.random.default_rng(0)
    out = np.empty((12, height, width), np.float32)
    for r in range(0, height, 64):
        for c in range(0, width, 64):
            patch = patches[rng.integers(len(patches))]
            out[:, r : r + 64, c : c + 64] = patch[:, : height - r, : width - c]
    return out


def test_predict_scene_keeps_georeferencing_respects_nodata_and_blends_overlaps(micro: Path, tmp_path: Path) -> None:
    import pyogrio
    import rasterio

    from landslide_dvc.serve.blend import window_weights
    from landslide_dvc.serve.maps import Georef, find_regions

    bands = scene_bands(micro, 160, 128)
    bands[:, 150, 5] = -9999.0  # a no-data pixel in the bottom strip
    scene, out = tmp_path / "scene.tif", tmp_path / "map.tif"
    write_scene(scene, bands, nodata=-9999.0)
    bundle_path = micro / "models/bundle"
    assert landslide(["predict", "--bundle", str(bundle_path), str(scene), "--out", str(out), "--stride", "32", "--device", "cpu"]) == 0

    with rasterio.open(scene) as src, rasterio.open(out) as dst:
        assert dst.crs == src.crs and dst.transform == src.transform and (dst.width, dst.height) == (128, 160)
        assert dst.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and dst.overviews(1) and np.isnan(dst.nodata)
        prob, georef = dst.read(1), Georef(dst.crs, dst.transform)
    # Windows start at rows 0, 32, 64, 96 (flush with the edge) and columns 0, 32, 64.
    bundle = load_bundle(bundle_path)
    score = {}
    for r in (0, 32, 64, 96):
        for c in (0, 32, 64):
            score[r, c] = bundle.score(bands[None, :, r : r + 64, c : c + 64], torch.device("cpu"), 8)[0]
    weight = window_weights(64)

    def blended(row: int, col: int, windows: list[tuple[int, int]]) -> float:
        w = [weight[row - r, col - c] for r, c in windows]
        return float(np.dot(w, [score[k] for k in windows]) / np.sum(w))

    # Pixel (70, 40) lies in windows rows {32, 64} x columns {0, 32}: the classifier's map keeps the
    # lowest of their scores (the intersection of its windows), --windows blend their Hann-weighted mean.
    covering = [(32, 0), (32, 32), (64, 0), (64, 32)]
    assert prob[70, 40] == pytest.approx(min(score[k] for k in covering), abs=1e-6)
    # Row 96's windows cover the no-data pixel (150, 5) at columns 0 only; pixels below row 128 in
    # columns 0..31 are then covered by no scored window: no-data, never a "no landslide" 0.
    assert np.isnan(prob[150, 5]) and np.isnan(prob[140, 10])
    assert prob[150, 40] == pytest.approx(score[96, 32], abs=1e-6)  # window (96, 0) was skipped
    assert prob[150, 70] == pytest.approx(min(score[96, 32], score[96, 64]), abs=1e-6)
    assert np.isfinite(prob[:128]).all()
    blend_out = tmp_path / "blend" / "map.tif"
    blend_out.parent.mkdir()
    assert landslide(["predict", "--bundle", str(bundle_path), str(scene), "--out", str(blend_out), "--windows", "blend",
                      "--device", "cpu"]) == 0
    with rasterio.open(blend_out) as dst:
        blend = dst.read(1)
        assert dst.tags()["LANDSLIDE_BLEND"].startswith("Hann window weights")
    assert blend[70, 40] == pytest.approx(blended(70, 40, covering), abs=1e-6)
    assert blend[150, 70] == pytest.approx(blended(150, 70, [(96, 32), (96, 64)]), abs=1e-6)

    info = pyogrio.read_info(out.with_suffix(".gpkg"))
    assert info["crs"] == "EPSG:32633" and list(info["fields"]) == ["area_m2", "mean_prob", "max_prob", "mean_uncertainty"]
    assert info["features"] == len(find_regions(prob, bundle.threshold, georef))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blend", "map.gpkg", "map.tif", "scene.tif"]  # nothing left over


def test_predict_scene_writes_geojson_polygons_where_asked(micro: Path, tmp_path: Path) -> None:
    import pyogrio

    bands = scene_bands(micro, 64, 64)
    write_scene(tmp_path / "s.tif", bands)
    polygons = tmp_path / "web" / "slides.geojson"
    assert landslide(["predict", "--bundle", str(micro / "models/bundle"), str(tmp_path / "s.tif"), "--out",
                      str(tmp_path / "m.tif"), "--polygons", str(polygons), "--device", "cpu"]) == 0
    assert pyogrio.read_info(polygons)["crs"] == "EPSG:4326" and not (tmp_path / "m.gpkg").exists()


def test_predict_scene_skips_nan_pixels(micro: Path, tmp_path: Path) -> None:
    import rasterio

    bands = scene_bands(micro, 64, 96)
    bands[3, 10, 90] = np.nan
    write_scene(tmp_path / "s.tif", bands)
    assert landslide(["predict", "--bundle", str(micro / "models/bundle"), str(tmp_path / "s.tif"), "--out",
                      str(tmp_path / "m.tif"), "--stride", "16", "--device", "cpu"]) == 0
    with rasterio.open(tmp_path / "m.tif") as dst:
        prob = dst.read(1)
    # Windows start at columns 0, 16 and 32; the NaN at column 90 drops the one at 32, so columns
    # 80..95 (covered by it alone) are no-data and the rest is scored.
    assert np.isfinite(prob[:, :80]).all() and np.isnan(prob[:, 80:]).all()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("bands", "has 11 bands, the bundle expects 12 (Red, Green, Blue, NIR, ..., ADVH, in this order)"),
        ("complex", "has non-numeric (or complex) bands of type complex64"),
        ("gcps", "is located only by 3 ground control points (no CRS and geotransform), so a map would land at 0 deg, 0 deg"),
        ("reflectance", "s.tif: the window at row 0, column 128 looks like reflectance (99th percentile"),
        ("polygons", "--polygons"),
    ],
)
def test_bad_scenes_are_one_line_errors(micro: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str) -> None:
    import rasterio
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    bands = scene_bands(micro, 64, 192)
    extra = []
    if case == "bands":
        write_scene(tmp_path / "s.tif", bands[:11])
    elif case == "complex":
        write_scene(tmp_path / "s.tif", bands, dtype="complex64")
    elif case == "gcps":  # as raw exports are located: GCPs, no CRS or transform
        with rasterio.open(tmp_path / "s.tif", "w", driver="GTiff", width=192, height=64, count=12, dtype="float32") as dst:
            dst.write(bands)
            dst.gcps = ([GroundControlPoint(0, 0, 15.0, 37.0), GroundControlPoint(0, 192, 15.02, 37.0),
                         GroundControlPoint(64, 0, 15.0, 36.99)], CRS.from_epsg(4326))
    elif case == "reflectance":  # the right third of the scene at reflectance, the rest digital numbers
        bands[:4, :, 128:] /= 10000.0
        write_scene(tmp_path / "s.tif", bands)
    else:
        write_scene(tmp_path / "s.tif", bands)
        extra = ["--polygons", str(tmp_path / "p.shp")]
    assert landslide(["predict", "--bundle", str(micro / "models/bundle"), str(tmp_path / "s.tif"), "--out",
                      str(tmp_path / "m.tif"), "--stride", "32", "--device", "cpu", *extra]) == 1
    err = error_line(capsys.readouterr().err)
    assert message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]  # no map, no polygons, no partial files


def test_one_patch_at_reflectance_scale_is_a_one_line_error_naming_it(
    micro: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    zindi = Path(shutil.copytree(micro / "data/zindi", tmp_path / "zindi"))
    bad = sorted((zindi / "test_data").glob("*.npy"))[5]
    patch = np.load(bad)
    patch[..., :4] /= 10000.0
    np.save(bad, patch)
    for source in (zindi, zindi / "test_data"):  # the Zindi folder and a plain patch folder
        out = tmp_path / f"{source.name}.csv"
        assert landslide(["predict", "--bundle", str(micro / "models/bundle"), str(source), "--out", str(out), "--device", "cpu"]) == 1
        err = error_line(capsys.readouterr().err)
        assert f"patch {bad.stem} looks like reflectance (99th percentile " in err
        assert "not the bundle's optical_scale 10000; multiply its optical bands by 10000" in err
        assert not out.exists()


def test_a_tampered_bundle_is_a_one_line_error(micro: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = copy_bundle(micro, tmp_path)
    (bundle / "heads/fold_3.skops").write_bytes((bundle / "heads/fold_3.skops").read_bytes() + b"x")
    assert landslide(["predict", "--bundle", str(bundle), str(micro / "data/zindi"), "--out", str(tmp_path / "o.csv")]) == 1
    err = error_line(capsys.readouterr().err)
    assert "fold_3.skops does not match its sha256" in err


@pytest.mark.slow  # a subprocess that imports the stack and scores a scene twice
def test_predict_scene_bench_runs_small_with_the_micro_bundle(micro: Path, tmp_path: Path) -> None:
    import subprocess

    figure = tmp_path / "map.png"
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench/predict_scene.py"), "--bundle", str(micro / "models/bundle"),
         "--size", "256", "--stride", "64", "--device", "cpu", "--figure", str(figure), "--workdir", str(tmp_path / "w")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(": ", 1) for line in result.stdout.strip().splitlines() if ": " in line)
    # 4 x 4 windows at stride 64 on the continuous scene; the 3 touching its no-data corner (lower right,
    # 5 % of the scene: legs of 81 px) are skipped
    assert lines["windows"].startswith("13 scored of 16 (stride 64")
    assert "windows/s" in lines["predict"] and "km^2/s at 10 m pixels (7 km^2)" in lines["predict"]
    assert "pixel F1" in lines["map vs truth"] and "objects found" in lines["map vs truth"]
    assert float(lines["ratio"]) > 0 and float(lines["ratio networks"]) > 0
    # the classifier's map is the intersection of its windows (predict's default for the kind)
    assert "across window edges" in lines["seams intersection"] and "inside windows" in lines["seams plain mean"]
    assert figure.stat().st_size > 10_000
    import rasterio

    with rasterio.open(tmp_path / "w/map.tif") as dst:
        prob = dst.read(1)
    assert np.isnan(prob[-1, -1]) and np.isfinite(prob[:128, :128]).all()


def test_skops_head_bytes_depend_only_on_the_head() -> None:
    # skops names arrays after memory addresses and dates zip entries: a deep copy of the same head
    # must still give the same file, so that a fresh clone's export reproduces dvc.lock's hash
    import copy
    import time

    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from landslide_dvc.core.heads import SKOPS_TRUSTED, canonical_skops

    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(40, 6)), np.repeat([0, 1], 20)
    head = make_pipeline(StandardScaler(), SVC(C=0.1)).fit(features, labels)
    first = sio.dumps(head)
    time.sleep(2.1)  # zip timestamps have a 2 s resolution
    second = sio.dumps(copy.deepcopy(head))
    assert first != second  # what skops alone writes
    assert canonical_skops(first) == canonical_skops(second)
    reloaded = sio.loads(canonical_skops(first), trusted=SKOPS_TRUSTED)
    assert np.array_equal(reloaded.decision_function(features), head.decision_function(features))
