"""`landslide-dvc predict` over many scenes (serve/region.py): one process against a Dask cluster, resumes, failures.

The scenes are crops of the committed 512 px test scene (data/scene/scene.tif, with its no-data
corner) scored by the committed classifier bundle (models/bundle), 3 or 4 row blocks of windows each.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.windows import Window
from shapely.geometry import box

from landslide_dvc.cli import main
from landslide_dvc.core.geo import read_features, write_features
from landslide_dvc.core.mapping_rules import MappingRules
from landslide_dvc.serve import region
from landslide_dvc.serve.region import RegionOptions, list_scenes, predict_region, scene_row_blocks, write_region_layer
from landslide_dvc.serve.scene_reader import window_offsets
from landslide_dvc.serve.strips import Tiles

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "models" / "bundle"
SCENE = ROOT / "data" / "scene" / "scene.tif"
CROPS = {"north": (0, 0), "east": (120, 280), "south": (312, 96)}  # (row, col) of 200 x 232 px crops
OPTIONS = RegionOptions(stride=32, batch_size=16, threads=1, device="cpu")
STRIP_ROWS = 2

pytestmark = pytest.mark.skipif(not (BUNDLE / "manifest.json").is_file() or not SCENE.is_file(), reason="dvc checkout models/bundle data/scene")


def crop_scenes(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with rasterio.open(SCENE) as src:
        for name, (row, col) in CROPS.items():
            area = Window(col, row, 232, 200)
            profile = {**src.profile, "width": 232, "height": 200, "transform": src.window_transform(area), "tiled": False}
            profile.pop("blockxsize", None), profile.pop("blockysize", None)
            with rasterio.open(folder / f"{name}.tif", "w", **profile) as dst:
                dst.write(src.read(window=area))
    return folder


def output_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.suffix in (".tif", ".gpkg", ".json")}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return crop_scenes(tmp_path_factory.mktemp("region") / "scenes")


@pytest.fixture(scope="module")
def reference(scenes: Path) -> Path:
    """The region mapped in this process."""
    out = scenes.parent / "one_process"
    summary = predict_region([scenes], out, BUNDLE, OPTIONS, strip_rows=STRIP_ROWS)
    assert sorted(Path(s).stem for s in summary.done) == sorted(CROPS) and not summary.failed
    return out


@pytest.fixture(scope="module")
def client():  # noqa: ANN201 - a distributed.Client
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, silence_logs=40)
    with cluster, Client(cluster) as dask_client:
        sha = region.manifest_sha256(BUNDLE)  # the workers import torch and load the bundle here, once
        dask_client.run(lambda: bool(region.worker_model(str(BUNDLE.resolve()), sha, OPTIONS.device)))
        yield dask_client


# ----------------------------------------------------------------------------------------------
# Bands and scene lists


@pytest.mark.parametrize(("height", "window", "stride", "strip_rows"), [(200, 64, 32, 2), (512, 64, 32, 16), (300, 128, 64, 1), (250, 64, 48, 3)])
def test_row_blocks_own_every_row_once_and_hold_every_window_that_touches_them(height: int, window: int, stride: int, strip_rows: int) -> None:
    rows = window_offsets(height, stride, window)
    blocks = scene_row_blocks(height, window, stride, strip_rows)
    assert blocks[0].top == 0 and blocks[-1].bottom == height
    assert all(a.bottom == b.top for a, b in zip(blocks, blocks[1:]))
    assert [r for b in blocks for r in b.owned_rows] == rows  # each window row counted by one block
    for block in blocks:
        assert list(block.window_rows) == [r for r in rows if r < block.bottom and r + window > block.top]


class PixelModel:
    """A SceneModel whose tiles vary inside a window and between the windows covering a pixel (band 2 and its window mean)."""

    kind, tta, window, threshold = "classifier", 1, 64, 0.5

    def __init__(self, bands: list[str], window_combination: str = "blend") -> None:
        self.bands = bands
        self.window_combination = window_combination

    @property
    def rules(self) -> MappingRules:
        return MappingRules(self.threshold)

    def slope_band(self) -> None:
        return None

    def check_scale(self, raw: np.ndarray, names: object, source: str, *, whole: bool) -> None:
        pass

    def window_inputs(self, strip: np.ndarray, cols: list[int]) -> np.ndarray:
        # the window's own mean makes every window that covers a pixel give it another value
        return np.stack([np.tanh((strip[2, :, c : c + 64] + strip[2, :, c : c + 64].mean()) / 3000.0) for c in cols]).astype(np.float32)

    def predict_tiles(self, inputs: np.ndarray, device: object, batch_size: int) -> Tiles:
        return Tiles(inputs, np.abs(inputs - 0.5).astype(np.float32))  # a spread that varies too


@pytest.mark.parametrize("combination", ["blend", "intersection"])
@pytest.mark.parametrize(("stride", "strip_rows"), [(24, 1), (24, 3), (40, 2), (64, 1), (32, 16)])
def test_stacked_row_blocks_are_score_scenes_map_bit_for_bit(
    scenes: Path, monkeypatch: pytest.MonkeyPatch, stride: int, strip_rows: int, combination: str
) -> None:
    import torch

    from landslide_dvc.serve.predict import score_scene
    from landslide_dvc.serve.scene_reader import open_scene

    with rasterio.open(scenes / "north.tif") as src:  # with the scene's no-data corner
        model = PixelModel([f"b{i}" for i in range(src.count)], combination)
        height = src.height
    monkeypatch.setattr(region, "_WORKER_MODELS", {("pixel", "sha"): model})
    options = RegionOptions(stride, 7, 0, "cpu")  # the worker's model decides the combination, as the bundle's kind does
    with open_scene(scenes / "north.tif", model.bands, 64) as src:
        expected = score_scene(src, model, stride, torch.device("cpu"), 7, "north.tif")
    blocks = [region.score_row_block(str(scenes / "north.tif"), "pixel", "sha", options, b) for b in scene_row_blocks(height, 64, stride, strip_rows)]
    assert np.array_equal(np.concatenate([b.probability for b in blocks]), expected.probability, equal_nan=True)
    assert np.array_equal(np.concatenate([b.uncertainty for b in blocks]), expected.uncertainty, equal_nan=True)
    assert sum(b.n_scored for b in blocks) == expected.n_scored and sum(b.n_windows for b in blocks) == expected.n_windows


def test_scenes_come_from_a_folder_a_glob_or_a_list(scenes: Path, tmp_path: Path) -> None:
    expected = sorted(scenes.glob("*.tif"))
    assert list_scenes([scenes]) == expected
    assert list_scenes([Path(f"{scenes}/*.tif")]) == expected
    listing = tmp_path / "scenes.txt"
    listing.write_text("# the region\n" + "\n".join(os.path.relpath(p, tmp_path) for p in expected) + "\n\n")
    assert [p.resolve() for p in list_scenes([listing])] == expected
    assert region.is_region_spec([scenes]) and region.is_region_spec([listing]) and region.is_region_spec(expected)
    assert not region.is_region_spec([expected[0]])  # one scene: the single-scene path (unless --out is a folder)
    (tmp_path / "Test.csv").write_text("ID\n")
    (tmp_path / "x.tif").write_bytes(b"")
    assert not region.is_region_spec([tmp_path])  # a Zindi-layout folder is the challenge's test set
    with pytest.raises(region.DataError, match="share the name north"):
        list_scenes([scenes / "north.tif", tmp_path / "north.tif"])
    with pytest.raises(region.DataError, match="matches no file"):
        list_scenes([Path(f"{tmp_path}/none-*.tif")])


# ----------------------------------------------------------------------------------------------
# Same bytes in one process, on a cluster, and as the single-scene predict


def test_the_region_map_is_the_single_scene_map_byte_for_byte(scenes: Path, reference: Path, tmp_path: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(OPTIONS.threads)  # the single-scene path runs on the process's threads
    try:
        assert main(["predict", str(scenes / "north.tif"), "--out", str(tmp_path / "north.tif"), "--batch-size", "16", "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "north.tif").read_bytes() == (reference / "north.tif").read_bytes()
    assert (tmp_path / "north.gpkg").read_bytes() == (reference / "north.gpkg").read_bytes()


def test_a_two_worker_cluster_gives_the_bytes_of_one_process(scenes: Path, reference: Path, client, tmp_path: Path) -> None:  # noqa: ANN001
    out = tmp_path / "cluster"
    summary = predict_region([scenes], out, BUNDLE, OPTIONS, client=client, strip_rows=STRIP_ROWS)
    assert len(summary.done) == len(CROPS) and not summary.failed
    assert output_bytes(out) == output_bytes(reference)
    # every worker process chose its own device (select_device, once per process) and loaded the bundle once
    per_worker = client.run(lambda: (sorted(region._WORKER_DEVICES), len(region._WORKER_MODELS)))
    assert len(per_worker) == 2 and all(devices == ["cpu"] and models == 1 for devices, models in per_worker.values())


def test_the_cli_uses_an_existing_scheduler_and_prints_its_dashboard(
    scenes: Path, reference: Path, client, tmp_path: Path, capsys: pytest.CaptureFixture  # noqa: ANN001
) -> None:
    out = tmp_path / "cli"
    argv = ["predict", f"{scenes}/*.tif", "--out", str(out), "--scheduler", client.scheduler.address, "--batch-size", "16",
            "--strip-rows", str(STRIP_ROWS), "--device", "cpu"]
    assert main(argv) == 0
    assert "Dask dashboard at" in capsys.readouterr().err
    assert output_bytes(out) == output_bytes(reference)


def test_workers_start_a_local_cluster_of_single_threaded_processes() -> None:
    client = region.start_client(2, None)
    try:
        assert client.cluster.processes and len(client.scheduler_info()["workers"]) == 2
        assert all(w["nthreads"] == 1 for w in client.scheduler_info()["workers"].values())
    finally:
        region.close_client(client)
    assert region.start_client(None, None) is None


def test_a_killed_worker_loses_no_scene(scenes: Path, reference: Path, client, tmp_path: Path) -> None:  # noqa: ANN001
    before = client.run(os.getpid)
    victim = sorted(before)[0]
    killed = []

    def kill_once() -> None:  # a real kill, while the other row blocks are queued or running
        if not killed:
            os.kill(before[victim], signal.SIGKILL)
            killed.append(victim)

    out = tmp_path / "killed"
    summary = predict_region([scenes], out, BUNDLE, OPTIONS, client=client, strip_rows=STRIP_ROWS, on_band=kill_once)
    assert killed and not summary.failed and len(summary.done) == len(CROPS)
    assert output_bytes(out) == output_bytes(reference)
    with pytest.raises(ProcessLookupError):  # the worker process really died (its nanny starts another)
        os.kill(before[victim], 0)


# ----------------------------------------------------------------------------------------------
# Resumes and failures


def test_a_rerun_skips_the_finished_scenes_and_redoes_a_changed_one(scenes: Path, reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    out = tmp_path / "rerun"
    shutil.copytree(reference, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    scored: list[str] = []
    real = region.score_row_block

    def counting(scene: str, *args):  # noqa: ANN001, ANN202
        scored.append(Path(scene).stem)
        return real(scene, *args)

    monkeypatch.setattr(region, "score_row_block", counting)
    summary = predict_region([scenes], out, BUNDLE, OPTIONS, strip_rows=STRIP_ROWS)
    assert not scored and len(summary.skipped) == len(CROPS) and not summary.done
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in out.iterdir() if p.suffix in (".tif", ".json"))

    changed = tmp_path / "changed"
    shutil.copytree(scenes, changed)
    with rasterio.open(changed / "east.tif", "r+") as dst:  # new data, same size: the scene's sha256 decides
        dst.write(dst.read()[:, ::-1, :])
    summary = predict_region([changed], out, BUNDLE, OPTIONS, strip_rows=STRIP_ROWS)
    assert set(scored) == {"east"} and [Path(s).stem for s in summary.done] == ["east"]
    summary = predict_region([changed], out, BUNDLE, RegionOptions(48, 16, 1, "cpu"), strip_rows=STRIP_ROWS)
    assert len(summary.done) == len(CROPS)  # another stride: every scene again


def test_bad_scenes_are_reported_in_one_line_and_the_good_ones_complete(scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "north.tif").write_bytes((scenes / "north.tif").read_bytes())
    (mixed / "notes.tif").write_text("not a raster\n")
    with rasterio.open(mixed / "three_bands.tif", "w", driver="GTiff", width=200, height=200, count=3, dtype="float32",
                       crs=CRS.from_epsg(32645), transform=from_origin(500000, 3000000, 10, 10)) as dst:
        dst.write(np.ones((3, 200, 200), np.float32))
    with rasterio.open(scenes / "north.tif") as src, rasterio.open(mixed / "nowhere.tif", "w", driver="GTiff", width=src.width,
                                                                       height=src.height, count=src.count, dtype="float32") as dst:
        dst.write(src.read())
    out = tmp_path / "out"
    assert main(["predict", str(mixed), "--out", str(out), "--batch-size", "16", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    for name, why in [("notes.tif", "give a GeoTIFF"), ("three_bands.tif", "has 3 bands"), ("nowhere.tif", "no georeference")]:
        line = next(line for line in err.splitlines() if f"failed: {mixed / name}" in line)
        assert why in line
    assert "1 scenes mapped, 0 already done, 3 failed" in err
    assert (out / "north.tif").is_file() and (out / "north.json").is_file() and not (out / "notes.json").exists()
    _, columns, _ = read_features(out / "landslides.gpkg", ["scene"])
    assert set(columns["scene"]) <= {"north"}


def test_the_region_layer_reprojects_other_crss_to_the_first_scenes(tmp_path: Path) -> None:
    utm = CRS.from_epsg(32645)
    values = {"area_m2": np.array([100.0]), "mean_prob": np.array([0.7]), "max_prob": np.array([0.9]), "mean_uncertainty": np.array([0.1])}
    write_features(tmp_path / "a.gpkg", [box(500000, 3000000, 500010, 3000010)], values, utm)
    write_features(tmp_path / "b.gpkg", [box(87.0, 27.1, 87.001, 27.101)], values, CRS.from_epsg(4326))
    assert write_region_layer(tmp_path, [tmp_path / "a.tif", tmp_path / "b.tif"]) == 2
    geometries, columns, crs = read_features(tmp_path / "landslides.gpkg", ["scene", "area_m2"])
    assert list(columns["scene"]) == ["a", "b"] and CRS.from_user_input(crs) == utm
    assert 400000 < geometries[1].bounds[0] < 700000  # metres east, not degrees


def test_each_worker_process_chooses_its_device_once_with_select_device(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    calls: list[str] = []
    monkeypatch.setattr(region, "_WORKER_DEVICES", {})
    monkeypatch.setattr(region, "select_device", lambda preference, param: calls.append(preference) or torch.device("cpu"))
    assert region.worker_device("cuda:auto") == region.worker_device("cuda:auto") == torch.device("cpu")
    assert calls == ["cuda:auto"]  # one claim per process: `cuda:auto` locks a GPU no other worker holds


def test_dask_distributed_is_a_locked_dependency() -> None:
    tomllib = pytest.importorskip("tomllib")

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.replace(" ", "").startswith("dask[distributed]") for d in dependencies)
    lock = (ROOT / "requirements.lock").read_text()
    assert re.search(r"^dask==\S+", lock, re.M) and re.search(r"^distributed==\S+", lock, re.M)


# ----------------------------------------------------------------------------------------------
# A run never destroys what the user had; output errors in one line (issue 30)

PREDICT = ["--batch-size", "16", "--strip-rows", str(STRIP_ROWS), "--device", "cpu"]


def read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``folder`` read-only; as root (who writes anyway) also refuse Python's creations in it."""
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return
    real_open, real_mkdir = os.open, os.mkdir

    def inside(path) -> bool:  # noqa: ANN001
        return Path(os.fsdecode(path)).resolve().parent == folder.resolve()

    def refusing_open(path, flags, *args, **kwargs):  # noqa: ANN001, ANN202
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and inside(path):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    def refusing_mkdir(path, *args, **kwargs):  # noqa: ANN001, ANN202
        if inside(path):
            raise PermissionError(13, "Permission denied", os.fsdecode(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    monkeypatch.setattr(os, "mkdir", refusing_mkdir)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("landslide-dvc predict:")]


def write_inventory(path: Path, layer: str = "inventory") -> bytes:
    """The user's own GeoPackage: an inventory in a layer of its own, with its own columns."""
    write_features(path, [box(500000, 3000000, 500100, 3000100)], {"year": np.array([2015.0])}, CRS.from_epsg(32645), layer=layer)
    return path.read_bytes()


def test_a_users_landslides_gpkg_is_never_replaced(scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for layer in ("inventory", "landslides"):  # another layer, or the region's layer name with other columns
        out = tmp_path / f"out_{layer}"
        out.mkdir()
        before = write_inventory(out / "landslides.gpkg", layer)
        assert main(["predict", str(scenes), "--out", str(out), *PREDICT]) == 1
        err = capsys.readouterr().err
        assert f"{out / 'landslides.gpkg'} exists and is not a region layer written by predict" in error_lines(err)[-1]
        assert "Traceback" not in err and (out / "landslides.gpkg").read_bytes() == before
        assert sorted(p.name for p in out.iterdir()) == ["landslides.gpkg"]  # refused before any work
    # --out set to the scenes' own folder: every scene is refused, and the user's file stays as it was
    own = tmp_path / "own"
    crop_scenes(own)
    before = write_inventory(own / "landslides.gpkg")
    assert main(["predict", str(own), "--out", str(own), *PREDICT]) == 1
    assert (own / "landslides.gpkg").read_bytes() == before
    (own / "landslides.gpkg").unlink()
    assert main(["predict", str(own), "--out", str(own), *PREDICT]) == 1
    assert "no scene mapped, so no region layer written" in capsys.readouterr().err
    assert not (own / "landslides.gpkg").exists()  # nothing mapped: no layer at all
    # a scene's output path holding a file of the user's: that scene is refused, the file is kept
    out = tmp_path / "mixed"
    out.mkdir()
    before = write_inventory(out / "north.gpkg")
    assert main(["predict", str(scenes), "--out", str(out), *PREDICT]) == 1
    assert f"{out / 'north.gpkg'} exists and was not written by predict" in capsys.readouterr().err
    assert (out / "north.gpkg").read_bytes() == before and not (out / "north.tif").exists() and (out / "east.tif").is_file()
    # the region layer of an earlier run is predict's own: a rerun replaces it
    assert main(["predict", str(scenes), "--out", str(tmp_path / "again"), *PREDICT]) == 0
    assert main(["predict", str(scenes), "--out", str(tmp_path / "again"), *PREDICT]) == 0
    assert "0 scenes mapped, 3 already done, 0 failed; " in capsys.readouterr().out


def test_a_scene_named_like_the_region_layer_is_refused_up_front(scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "scenes"
    folder.mkdir()
    (folder / "landslides.tif").write_bytes((scenes / "north.tif").read_bytes())
    (folder / "east.tif").write_bytes((scenes / "east.tif").read_bytes())
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--out", str(out), *PREDICT]) == 1
    err = capsys.readouterr().err
    assert error_lines(err) == [
        f"landslide-dvc predict: error: {folder / 'landslides.tif'} would write its polygons to {out / 'landslides.gpkg'}, "
        "the region layer's name; rename the scene (the name landslides is the region's)"
    ]
    assert not any(out.iterdir())  # nothing scored, nothing written


def test_a_scene_list_saved_by_a_windows_editor(scenes: Path, tmp_path: Path) -> None:
    listing = tmp_path / "lists" / "tiles.txt"
    listing.parent.mkdir()
    relative = os.path.relpath(scenes, listing.parent)
    text = f"# tiles of the region\r\n\r\n{relative}/north.tif\r\n   {scenes / 'east.tif'}  \r\n# {relative}/south.tif is cloudy\r\n"
    listing.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert [p.resolve() for p in list_scenes([listing])] == [scenes / "north.tif", scenes / "east.tif"]
    listing.write_bytes("\ufeffnorth.tif\r\n".encode("utf-16"))  # Notepad's "Unicode"
    with pytest.raises(region.DataError, match=rf"{re.escape(str(listing))} line 1: .*north.tif not found; fix the line"):
        list_scenes([listing])  # decoded, then resolved against the list's folder, where there is no north.tif
    listing.write_bytes(b"\xff\x00 not text\n")
    with pytest.raises(region.DataError, match="is not UTF-8 text"):
        list_scenes([listing])


def test_output_folders_that_cannot_be_written_are_one_line_errors_before_any_work(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from landslide_dvc.serve import predict as single

    scored: list[str] = []
    monkeypatch.setattr(region, "score_row_block", lambda scene, *args: scored.append(scene))
    monkeypatch.setattr(single, "score_scene", lambda *args, **kwargs: scored.append("scene"))
    a_file = tmp_path / "results"
    a_file.write_text("the user's notes\n")
    read_only_folder = tmp_path / "read_only"
    read_only_folder.mkdir()
    cases = [
        ([str(scenes), "--out", str(a_file)], f"{a_file} is a file, not a folder, so --out cannot be written there"),
        ([str(scenes), "--out", str(a_file / "region")], f"cannot create the folder {a_file / 'region'}: {a_file} is a file"),
        ([str(scenes / "north.tif"), "--out", str(a_file / "map.tif")], f"{a_file} is a file, not a folder, so --out cannot"),
        ([str(scenes), "--out", str(read_only_folder)], f"the folder {read_only_folder} is not writable"),
        ([str(scenes / "north.tif"), "--out", str(read_only_folder / "north.tif")], f"the folder {read_only_folder} is not writable"),
    ]
    read_only(read_only_folder, monkeypatch)
    try:
        for argv, message in cases:
            assert main(["predict", *argv, *PREDICT]) == 1, argv
            err = capsys.readouterr().err
            assert len(error_lines(err)) == 1 and message in error_lines(err)[0] and "Traceback" not in err, err
    finally:
        read_only_folder.chmod(0o755)
    assert not scored and a_file.read_text() == "the user's notes\n" and not any(read_only_folder.iterdir())


def test_the_per_scene_summary_is_kept_when_the_region_layer_cannot_be_written(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno

    out = tmp_path / "out"

    def full_disk(out_dir: Path, finished: list[Path]) -> int:
        raise OSError(errno.EACCES, "Permission denied", str(out_dir / "landslides.gpkg"))

    monkeypatch.setattr(region, "write_region_layer", full_disk)
    assert main(["predict", str(scenes), "--out", str(out), *PREDICT]) == 1
    err = capsys.readouterr().err
    assert error_lines(err)[-1].startswith("landslide-dvc predict: error: 3 scenes mapped, 0 already done, 0 failed; the region layer was not written: ")
    assert "Traceback" not in err and all((out / f"{name}.json").is_file() for name in CROPS)


def test_a_rerun_into_the_folder_of_tiff_scenes_resumes(scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = tmp_path / "tiffs"
    folder.mkdir()
    (folder / "u.tiff").write_bytes((scenes / "north.tif").read_bytes())
    assert main(["predict", str(folder), "--out", str(folder), *PREDICT]) == 0
    assert "1 scenes mapped, 0 already done, 0 failed" in capsys.readouterr().out
    stamp = (folder / "u.tif").stat().st_mtime_ns
    listing = folder / "tiles.txt"
    listing.write_text("u.tiff\nu.tif\n")
    # the map u.tif written by the first run is no scene: in the folder, a glob, the shell's expansion, a list
    for spec in ([str(folder)], [f"{folder}/*.tif*"], [str(folder / "u.tif"), str(folder / "u.tiff")], [str(listing)]):
        assert main(["predict", *spec, "--out", str(folder), *PREDICT]) == 0
        assert "0 scenes mapped, 1 already done, 0 failed" in capsys.readouterr().out
    assert (folder / "u.tif").stat().st_mtime_ns == stamp


def write_declared(source: Path, target: Path) -> list[tuple[float, float]]:
    """``source`` stored as (value - offset) / scale, with scale 0.5 on every band and offset -1000 on the
    optical (whole DN) bands, as Sentinel-2 L2A's baseline 04.00 declares it: exact in float32."""
    with rasterio.open(source) as src:
        values, profile = src.read(), src.profile
    whole = [bool(np.all(np.nan_to_num(band) == np.round(np.nan_to_num(band)))) for band in values]
    declared = [(0.5, -1000.0 if is_whole else 0.0) for is_whole in whole]
    scales = np.array([s for s, _ in declared], np.float32)[:, None, None]
    offsets = np.array([o for _, o in declared], np.float32)[:, None, None]
    with rasterio.open(target, "w", **profile) as dst:
        dst.write((values - offsets) / scales)
        dst.scales = [s for s, _ in declared]
        dst.offsets = [o for _, o in declared]
    return declared


def test_declared_band_scale_and_offset_are_applied_before_the_bundles_scaling(scenes: Path, reference: Path, tmp_path: Path) -> None:
    import torch

    declared = tmp_path / "declared"
    declared.mkdir()
    assert write_declared(scenes / "north.tif", declared / "north.tif")[:5] == [(0.5, -1000.0)] * 4 + [(0.5, 0.0)]
    with rasterio.open(declared / "north.tif") as src, rasterio.open(scenes / "north.tif") as plain:
        assert src.scales[0] == 0.5 and src.offsets[0] == -1000.0
        assert src.read(1)[0, 0] == (plain.read(1)[0, 0] + 1000) * 2  # DN + 1000, x 2
    threads = torch.get_num_threads()
    torch.set_num_threads(OPTIONS.threads)
    try:  # the single-scene path
        assert main(["predict", str(declared / "north.tif"), "--out", str(tmp_path / "single.tif"), "--batch-size", "16", "--device", "cpu"]) == 0
    finally:
        torch.set_num_threads(threads)
    summary = predict_region([declared], tmp_path / "region", BUNDLE, OPTIONS, strip_rows=STRIP_ROWS)  # and a region's
    assert len(summary.done) == 1
    with rasterio.open(reference / "north.tif") as plain:
        expected = plain.read(1)
        assert "LANDSLIDE_DECLARED_SCALING" not in plain.tags()  # nothing declared: today's tags and bytes
    for cog in (tmp_path / "single.tif", tmp_path / "region" / "north.tif"):
        with rasterio.open(cog) as mapped:
            assert np.array_equal(mapped.read(1), expected, equal_nan=True)
            tag = mapped.tags()["LANDSLIDE_DECLARED_SCALING"]
            assert "band 1: x 0.5 + -1000; " in tag and tag.endswith("band 12: x 0.5 + 0")
    assert (tmp_path / "single.gpkg").read_bytes() == (reference / "north.gpkg").read_bytes()
    assert (tmp_path / "region" / "north.gpkg").read_bytes() == (reference / "north.gpkg").read_bytes()


def test_a_maps_files_get_the_umask_mode(reference: Path) -> None:
    mask = os.umask(0o022)
    os.umask(mask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in reference.iterdir()}
    assert modes and all(mode == 0o666 & ~mask for mode in modes.values()), modes


def write_dem_under(scene: Path, path: Path, degrees: float) -> None:
    """A 30 m DEM of a plane rising ``degrees`` to the east, covering ``scene`` with a margin."""
    import math

    with rasterio.open(scene) as src:
        left, top = src.bounds.left - 300.0, src.bounds.top + 300.0
        crs = src.crs
    size = int((max(src.width, src.height) * 10.0 + 600.0) / 30.0) + 1
    elevation = 200.0 + math.tan(math.radians(degrees)) * 30.0 * np.arange(size)[None, :].repeat(size, 0)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "float32", "crs": crs,
               "transform": from_origin(left, top, 30.0, 30.0)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(elevation.astype(np.float32), 1)


def test_a_dems_slope_rule_on_a_zindi_scene_single_and_in_a_region(scenes: Path, reference: Path, tmp_path: Path) -> None:
    scene = scenes / "east.tif"
    reference_shapes, _, _ = read_features(reference / "east.gpkg", ["area_m2"])
    flat, steep = tmp_path / "flat.tif", tmp_path / "steep.tif"
    write_dem_under(scene, flat, 0.0)
    write_dem_under(scene, steep, 20.0)
    base = ["predict", str(scene), "--bundle", str(BUNDLE), "--device", "cpu", "--batch-size", "16"]
    assert main([*base, "--out", str(tmp_path / "steep_map.tif"), "--dem", str(steep), "--min-slope", "10"]) == 0
    steep_shapes, _, _ = read_features(tmp_path / "steep_map.gpkg", ["area_m2"])
    assert len(reference_shapes) > 0 and len(steep_shapes) == len(reference_shapes)  # 20 deg everywhere: nothing vetoed
    with rasterio.open(tmp_path / "steep_map.tif") as src:
        assert "slope in degrees from the DEM steep.tif" in src.tags()["LANDSLIDE_RULES"]
        assert "covering 100.0 % of the scene" in src.tags()["LANDSLIDE_RULES"]
    assert main([*base, "--out", str(tmp_path / "flat_map.tif"), "--dem", str(flat), "--min-slope", "10"]) == 0
    flat_shapes, _, _ = read_features(tmp_path / "flat_map.gpkg", ["area_m2"])
    assert flat_shapes == []  # flat ground never holds a landslide

    region_out = tmp_path / "region"
    options = RegionOptions(stride=32, batch_size=16, threads=1, device="cpu", dem=str(steep), smooth=0)
    from landslide_dvc.serve.bundle import load_bundle

    model = load_bundle(BUNDLE)
    model.override_rules(min_slope=10.0)
    summary = predict_region([scene], region_out, BUNDLE, options, strip_rows=STRIP_ROWS, model=model)
    assert summary.done == [str(scene)]
    assert (region_out / "east.gpkg").read_bytes() == (tmp_path / "steep_map.gpkg").read_bytes()
    import json

    key = json.loads((region_out / "east.json").read_text())["key"]
    from landslide_dvc.core.io import file_sha256

    assert key["dem_sha256"] == file_sha256(steep) and key["rules"]["min_slope"] == 10.0


def test_a_dated_region_writes_each_scenes_item_and_a_collection_and_resumes_over_them(scenes: Path, reference: Path, tmp_path: Path) -> None:
    import json

    import pystac

    out = tmp_path / "dated"
    options = RegionOptions(stride=32, batch_size=16, threads=1, device="cpu", datetime="2024-06-01")
    summary = predict_region([scenes], out, BUNDLE, options, strip_rows=STRIP_ROWS)
    assert sorted(summary.done) == sorted(str(scenes / f"{n}.tif") for n in CROPS) and summary.n_items == 3
    for name in CROPS:  # the maps are the undated region's, byte for byte; only the Items are new
        assert (out / f"{name}.tif").read_bytes() == (reference / f"{name}.tif").read_bytes()
        assert not (reference / f"{name}.item.json").exists()
        item = pystac.Item.from_file(str(out / f"{name}.item.json"))
        assert item.datetime.isoformat() == "2024-06-01T00:00:00+00:00"
        assert json.loads((out / f"{name}.json").read_text())["outputs"].keys() == {f"{name}.tif", f"{name}.gpkg", f"{name}.item.json"}
    collection = pystac.Collection.from_file(str(out / "collection.json"))
    assert sorted(link.href for link in collection.links if link.rel == "item") == sorted(f"{n}.item.json" for n in CROPS)
    again = predict_region([scenes], out, BUNDLE, options, strip_rows=STRIP_ROWS)  # our Items and Collection are ours
    assert again.done == [] and len(again.skipped) == 3 and not again.failed
    (out / "collection.json").write_text('{"type": "Collection", "description": "my own"}')
    with pytest.raises(Exception, match="collection.json exists and is not a Collection written by predict"):
        predict_region([scenes], out, BUNDLE, options, strip_rows=STRIP_ROWS)
