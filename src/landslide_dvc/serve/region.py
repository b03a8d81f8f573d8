"""`landslide-dvc predict` over many scenes: scene strips as tasks, in one process or on a Dask cluster.

- **Scenes**: a folder's .tif/.tiff files, a glob pattern, a text file listing one scene path per line
  (relative paths are relative to the list's folder), or several paths. Every scene gives
  ``OUT/<stem>.tif`` (the probability COG) and ``OUT/<stem>.gpkg`` as the single-scene path writes them,
  then ``OUT/<stem>.json``, its manifest, written last; ``OUT/landslides.gpkg`` gathers every scene's
  polygons with a ``scene`` column, in the first scene's CRS (the others' polygons are reprojected).
- **Tasks** are bands of a scene: the pixel rows from one window row to the next band's first window
  row, scored by every window that touches them (the band's own window rows plus the halo of windows
  starting up to one window above). Each band blends its windows in the single-scene order (row by
  row, column by column) on its own accumulators, so every pixel adds the same tiles in the same
  order as `serve.predict.score_scene` and the bands' maps, stacked, equal its map bit for bit
  (window scores do not depend on which windows share a batch; tests check the equality).
- **Workers** load the bundle once per process (a cache keyed by the bundle's path and the sha256 of
  its manifest, which holds every file's sha256) and choose their device once, with
  `core.devices.select_device`: under ``cuda:auto`` each worker process claims its own GPU. Torch runs
  ``threads`` intra-op threads in every task (`core.runtime.use_threads`), whatever the worker, because
  the last bits of a CPU convolution depend on the thread count.
- **Resumable**: a scene whose manifest matches (scene size and sha256, bundle sha256, options) and whose
  outputs match the manifest's sha256s is skipped. A task lost with a killed worker is rerun by Dask
  elsewhere. A scene that fails (bad bands, no georeference, not a raster) is reported in one line and
  the other scenes complete.
"""

from __future__ import annotations

import glob
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from landslide_dvc.core.bundle import MANIFEST
from landslide_dvc.core.devices import select_device
from landslide_dvc.core.errors import DataError, LandslideError
from landslide_dvc.core.geo import Georef, read_features, write_features
from landslide_dvc.core.io import atomic_path, file_sha256
from landslide_dvc.core.patches import TEST_CSV
from landslide_dvc.core.runtime import use_threads
from landslide_dvc.serve.blend import TAPER_FLOOR, Blender
from landslide_dvc.serve.bundle import load_bundle
from landslide_dvc.serve.maps import MapFiles, staged_outputs, write_map_outputs
from landslide_dvc.serve.predict import SCENE_SUFFIXES, scene_map, scene_slope
from landslide_dvc.serve.scene import open_scene, window_offsets
from landslide_dvc.serve.strips import SceneModel, scored_tiles

REGION_LAYER_FILE = "landslides.gpkg"
STRIP_ROWS = 16  # window rows per task: about 16 x 340 windows on a 10,980 px Sentinel-2 tile
POLYGON_COLUMNS = ("area_m2", "mean_prob", "max_prob", "mean_uncertainty")
GLOB_CHARACTERS = set("*?[")


@dataclass(frozen=True)
class RegionOptions:
    """What decides a map's bytes (kept in every scene's manifest), and the device preference."""

    stride: int
    batch_size: int
    threads: int  # torch intra-op threads per task
    device: str  # auto, cpu, cuda, cuda:auto: chosen by each worker process


@dataclass(frozen=True)
class Band:
    """A task: pixel rows [top, bottom) of a scene, and the window rows that touch them."""

    index: int
    top: int
    bottom: int
    window_rows: tuple[int, ...]
    owned_rows: tuple[int, ...]  # the window rows this band counts (each window row is counted once)


@dataclass
class BandResult:
    top: int
    probability: np.ndarray  # (bottom - top, width) float32
    uncertainty: np.ndarray  # (bottom - top, width) float32
    n_scored: int  # windows of the owned rows scored
    n_windows: int  # windows of the owned rows, scored or skipped


@dataclass
class RegionSummary:
    done: list[str] = field(default_factory=list)  # scenes mapped in this run
    skipped: list[str] = field(default_factory=list)  # scenes whose manifest matched
    failed: dict[str, str] = field(default_factory=dict)  # scene -> one-line error
    n_regions: int = 0  # polygons in landslides.gpkg

    def line(self, out_dir: Path) -> str:
        return (
            f"{len(self.done)} scenes mapped, {len(self.skipped)} already done, {len(self.failed)} failed; "
            f"{self.n_regions} regions -> {out_dir / REGION_LAYER_FILE}"
        )


# ----------------------------------------------------------------------------------------------
# Scenes and bands


def is_region_spec(paths: Sequence[Path]) -> bool:
    """Many scenes: several paths, a glob, a .txt list, or a folder whose top level holds .tif/.tiff files."""
    if len(paths) != 1:
        return True
    path = paths[0]
    if GLOB_CHARACTERS & set(str(path)) and not path.exists():
        return True
    if path.is_file() and path.suffix.lower() == ".txt":
        return True
    if not path.is_dir() or (path / TEST_CSV).is_file():  # a Zindi-layout folder is the challenge's test set
        return False
    return any(p.suffix.lower() in SCENE_SUFFIXES for p in path.iterdir() if p.is_file())


def list_scenes(paths: Sequence[Path]) -> list[Path]:
    """The scenes named by folders, globs, .txt lists or plain paths, in order; stems must be unique."""
    scenes: list[Path] = []
    for path in paths:
        if path.is_dir():
            scenes += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SCENE_SUFFIXES)
        elif path.is_file() and path.suffix.lower() == ".txt":
            lines = [line.strip() for line in path.read_text().splitlines()]
            scenes += [p if p.is_absolute() else path.parent / p for p in map(Path, lines) if line_is_path(str(p))]
        elif GLOB_CHARACTERS & set(str(path)) and not path.exists():
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            if not found:
                raise DataError(f"the pattern {path} matches no file; quote it and check the folder")
            scenes += found
        else:
            scenes.append(path)
    if not scenes:
        raise DataError(f"{', '.join(map(str, paths))} names no .tif/.tiff scene; give a folder of scenes, a glob or a list")
    stems: dict[str, Path] = {}
    for scene in scenes:
        if scene.stem in stems:
            raise DataError(f"{stems[scene.stem]} and {scene} share the name {scene.stem}, so their maps would collide; rename one")
        stems[scene.stem] = scene
    return scenes


def line_is_path(line: str) -> bool:
    return bool(line) and line not in (".",) and not line.startswith("#")


def scene_bands(height: int, window: int, stride: int, strip_rows: int = STRIP_ROWS) -> list[Band]:
    """The scene's tasks: ``strip_rows`` window rows each, plus the windows above that reach into them."""
    rows = window_offsets(height, stride, window)
    bands = []
    for index, start in enumerate(range(0, len(rows), strip_rows)):
        owned = rows[start : start + strip_rows]
        top = 0 if start == 0 else owned[0]
        bottom = height if start + strip_rows >= len(rows) else rows[start + strip_rows]
        touching = tuple(r for r in rows if r < bottom and r + window > top)
        bands.append(Band(index, top, bottom, touching, tuple(owned)))
    return bands


# ----------------------------------------------------------------------------------------------
# Worker side

_WORKER_MODELS: dict[tuple[str, str], SceneModel] = {}  # (bundle path, manifest sha256) -> bundle on its device
_WORKER_DEVICES: dict[str, torch.device] = {}  # device preference -> this process's device


def worker_device(preference: str) -> torch.device:
    """This process's device, chosen once: under ``cuda:auto`` each worker process claims its own GPU."""
    if preference not in _WORKER_DEVICES:
        _WORKER_DEVICES[preference] = select_device(preference, "predict --device")
    return _WORKER_DEVICES[preference]


def worker_model(bundle_path: str, bundle_sha256: str, preference: str) -> tuple[SceneModel, torch.device]:
    """The bundle, loaded (and checked) once per process and kept on this process's device."""
    device = worker_device(preference)
    key = (bundle_path, bundle_sha256)
    if key not in _WORKER_MODELS:
        bundle = load_bundle(Path(bundle_path))
        if manifest_sha256(Path(bundle_path)) != bundle_sha256:
            raise DataError(f"{bundle_path} changed while the region was mapped; rerun predict")
        _WORKER_MODELS[key] = bundle.to(device)
    return _WORKER_MODELS[key], device


def score_band(scene: str, bundle_path: str, bundle_sha256: str, options: RegionOptions, band: Band) -> BandResult:
    """One task: the band's windows scored (`serve.strips.scored_tiles`, as `score_scene` scores them) and
    blended in the same order on the band's own accumulators; its rows of the map."""
    use_threads(options.threads)
    model, device = worker_model(bundle_path, bundle_sha256, options.device)
    w = model.window
    base = band.window_rows[0]
    with open_scene(Path(scene), model.bands, w, kind=model.kind) as src:
        cols = window_offsets(src.width, options.stride, w)
        blender = Blender(band.window_rows[-1] + w - base, src.width, w, TAPER_FLOOR, with_spread=True)
        n_scored = 0
        # the scene's first band checks its first strip's scale as a whole, as score_scene does
        for batch in scored_tiles(src, model, band.window_rows, cols, device, options.batch_size, scene, check_whole=band.index == 0):
            blender.add_batch([(r - base, c) for r, c in batch.where], batch.tiles.probability, batch.tiles.spread)
            n_scored += sum(r in band.owned_rows for r, _ in batch.where)
    own = slice(band.top - base, band.bottom - base)
    return BandResult(band.top, blender.result()[own], blender.uncertainty()[own], n_scored, len(band.owned_rows) * len(cols))


# ----------------------------------------------------------------------------------------------
# Manifests


def manifest_sha256(bundle_path: Path) -> str:
    """The bundle's identity: its manifest holds the sha256 of every other file."""
    return file_sha256(bundle_path / MANIFEST)


def scene_key(scene: Path, bundle_sha256: str, model: SceneModel, options: RegionOptions) -> dict[str, Any]:
    """What a scene's outputs depend on; a manifest with the same key (and intact outputs) is not redone."""
    return {
        "scene_bytes": scene.stat().st_size,
        "scene_sha256": file_sha256(scene),
        "bundle_sha256": bundle_sha256,
        "bundle_kind": model.kind,
        "window": model.window,
        "tta": model.tta,
        "threshold": model.threshold,
        "rules": model.rules.record(),
        "blend_floor": TAPER_FLOOR,
        "options": asdict(options),
    }


def outputs_of(out_dir: Path, scene: Path) -> tuple[MapFiles, Path]:
    """The scene's map outputs and its manifest."""
    return MapFiles.in_folder(out_dir, scene.stem), out_dir / f"{scene.stem}.json"


def is_done(out_dir: Path, scene: Path, key: dict[str, Any]) -> bool:
    files, manifest = outputs_of(out_dir, scene)
    try:
        written = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return False
    if written.get("key") != key:
        return False
    expected = written.get("outputs", {})
    return all(p.is_file() and expected.get(p.name) == file_sha256(p) for p in files.paths)


def write_manifest(out_dir: Path, scene: Path, key: dict[str, Any], n_scored: int, n_windows: int, n_regions: int) -> None:
    files, manifest = outputs_of(out_dir, scene)
    record = {
        "scene": str(scene), "key": key, "outputs": {p.name: file_sha256(p) for p in files.paths},
        "windows_scored": n_scored, "windows": n_windows, "regions": n_regions,
    }
    with atomic_path(manifest) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------------------------
# Driver


@dataclass
class ScenePlan:
    scene: Path
    key: dict[str, Any]
    georef: Georef
    height: int
    width: int
    bands: list[Band]
    results: dict[int, BandResult] = field(default_factory=dict)


BandRunner = Callable[[list[tuple[ScenePlan, Band]]], Iterable[tuple[ScenePlan, Band, BandResult | BaseException]]]


def run_in_process(tasks: list[tuple[ScenePlan, Band]], bundle_path: str, bundle_sha: str, options: RegionOptions) -> Iterable[tuple[ScenePlan, Band, BandResult | BaseException]]:
    for plan, band in tasks:
        try:
            yield plan, band, score_band(str(plan.scene), bundle_path, bundle_sha, options, band)
        except Exception as exc:  # noqa: BLE001 - reported per scene; the other scenes go on
            yield plan, band, exc


def run_on_cluster(client: Any, tasks: list[tuple[ScenePlan, Band]], bundle_path: str, bundle_sha: str, options: RegionOptions) -> Iterable[tuple[ScenePlan, Band, BandResult | BaseException]]:
    from distributed import as_completed

    futures = {}
    bundle_path = str(Path(bundle_path).resolve())  # workers elsewhere share the file system, not this process's folder
    for plan, band in tasks:
        # pure=False: a rerun after a failure must score again, never reuse a cached result by key
        future = client.submit(score_band, str(plan.scene.resolve()), bundle_path, bundle_sha, options, band, pure=False)
        futures[future] = (plan, band)
    for future in as_completed(futures):
        plan, band = futures.pop(future)
        try:
            yield plan, band, future.result()
        except Exception as exc:  # noqa: BLE001 - a bad scene, or a task that lost its worker too often
            yield plan, band, exc
        future.release()


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, LandslideError) else f"{type(exc).__name__}: {text}"


def predict_region(
    paths: Sequence[Path], out_dir: Path, bundle_path: Path, options: RegionOptions, *, client: Any = None,
    strip_rows: int = STRIP_ROWS, on_band: Callable[[], None] | None = None, model: SceneModel | None = None,
) -> RegionSummary:
    """Map every scene of ``paths`` into ``out_dir``; ``client``: a dask.distributed Client, else this process.

    ``model``: the bundle at ``bundle_path``, when the caller has loaded it already.
    """
    if options.stride < 1 or options.batch_size < 1 or strip_rows < 1 or options.threads < 0:
        raise DataError(f"--stride, --batch-size and --strip-rows must be >= 1 (got {options.stride}, {options.batch_size}, {strip_rows})")
    scenes = list_scenes(paths)
    out_dir.mkdir(parents=True, exist_ok=True)
    if model is None:  # the driver checks the bundle once and reads its window, bands, threshold
        model = load_bundle(bundle_path)
    bundle_sha = manifest_sha256(bundle_path)
    if client is None and (str(bundle_path), bundle_sha) not in _WORKER_MODELS:
        # the tasks run in this process: they take the driver's bundle instead of loading it again
        _WORKER_MODELS[(str(bundle_path), bundle_sha)] = model.to(worker_device(options.device))
    summary = RegionSummary()
    plans: list[ScenePlan] = []
    for scene in scenes:
        try:
            files, manifest = outputs_of(out_dir, scene)
            if scene.resolve() in {p.resolve() for p in (*files.paths, manifest)}:
                raise DataError(f"{scene} lies in the output folder {out_dir}, where its map would overwrite it; choose another --out")
            key = scene_key(scene, bundle_sha, model, options)
            if is_done(out_dir, scene, key):
                summary.skipped.append(str(scene))
                continue
            with open_scene(scene, model.bands, model.window, kind=model.kind) as src:
                georef, height, width = Georef(src.crs, src.transform), src.height, src.width
            plans.append(ScenePlan(scene, key, georef, height, width, scene_bands(height, model.window, options.stride, strip_rows)))
        except (LandslideError, OSError) as exc:
            summary.failed[str(scene)] = one_line(exc)
    tasks = [(plan, band) for plan in plans for band in plan.bands]
    n_windows = sum(len(window_offsets(p.width, options.stride, model.window)) * len(b.owned_rows) for p, b in tasks)
    source = (
        run_on_cluster(client, tasks, str(bundle_path), bundle_sha, options) if client is not None
        else run_in_process(tasks, str(bundle_path), bundle_sha, options)
    )
    scene_bar = tqdm(total=len(scenes), desc="predict scenes", unit="scene", file=sys.stderr, position=0)
    window_bar = tqdm(total=n_windows, desc="predict windows", unit="window", file=sys.stderr, position=1, mininterval=1.0)
    scene_bar.update(len(summary.skipped) + len(summary.failed))
    with scene_bar, window_bar:
        for plan, band, result in source:
            name = str(plan.scene)
            window_bar.update(len(window_offsets(plan.width, options.stride, model.window)) * len(band.owned_rows))
            if on_band is not None:
                on_band()
            if name in summary.failed:
                continue
            if isinstance(result, BaseException):
                summary.failed[name] = one_line(result)
                scene_bar.update()
                continue
            plan.results[band.index] = result
            if len(plan.results) == len(plan.bands):
                try:
                    finish_scene(plan, model, options, out_dir)
                    summary.done.append(name)
                except (LandslideError, OSError) as exc:
                    summary.failed[name] = one_line(exc)
                plan.results.clear()  # the rows are written; free them
                scene_bar.update()
    finished = [s for s in scenes if str(s) in summary.done or str(s) in summary.skipped]
    summary.n_regions = write_region_layer(out_dir, finished)
    return summary


def finish_scene(plan: ScenePlan, model: SceneModel, options: RegionOptions, out_dir: Path) -> None:
    """The bands stacked into the scene's map, its COG and polygons, then its manifest (last)."""
    bands = [plan.results[b.index] for b in plan.bands]
    probability = np.concatenate([b.probability for b in bands])
    uncertainty = np.concatenate([b.uncertainty for b in bands])
    files, _ = outputs_of(out_dir, plan.scene)
    slope = None
    if model.slope_band() is not None:
        with open_scene(plan.scene, model.bands, model.window, kind=model.kind) as src:
            slope = scene_slope(src, model)
    n_regions = write_map_outputs(scene_map(probability, uncertainty, plan.georef, model, options.stride, slope), files)
    write_manifest(out_dir, plan.scene, plan.key, sum(b.n_scored for b in bands), sum(b.n_windows for b in bands), n_regions)


def write_region_layer(out_dir: Path, scenes: Sequence[Path]) -> int:
    """Every finished scene's polygons in one layer with a ``scene`` column, in the first scene's CRS.

    Scenes in another CRS have their polygons reprojected (GDAL, through rasterio), vertex by vertex:
    pixel-edge outlines stay closed and their attributes (areas in m^2 on the ground) are unchanged.
    """
    from rasterio.crs import CRS
    from rasterio.warp import transform_geom
    from shapely.geometry import mapping, shape

    geometries: list[Any] = []
    columns: dict[str, list[Any]] = {"scene": [], **{c: [] for c in POLYGON_COLUMNS}}
    crs = None
    for scene in scenes:
        shapes, values, wkt = read_features(outputs_of(out_dir, scene)[0].polygons, POLYGON_COLUMNS)
        scene_crs = CRS.from_user_input(wkt)
        crs = scene_crs if crs is None else crs
        if scene_crs != crs:
            shapes = [shape(transform_geom(scene_crs, crs, mapping(g))) for g in shapes]
        geometries += shapes
        columns["scene"] += [scene.stem] * len(shapes)
        for c in POLYGON_COLUMNS:
            columns[c] += list(values[c])
    if crs is None:
        crs = CRS.from_epsg(4326)  # no finished scene: an empty layer in WGS 84
    arrays = {"scene": np.array(columns["scene"], dtype=object), **{c: np.asarray(columns[c], np.float64) for c in POLYGON_COLUMNS}}
    with staged_outputs(out_dir / REGION_LAYER_FILE) as (staged,):
        write_features(staged, geometries, arrays, crs)
    return len(geometries)


def start_client(workers: int | None, scheduler: str | None, threads_per_worker: int = 1) -> Any:
    """A dask.distributed Client: on an existing scheduler, on a new local cluster of ``workers`` processes, or None."""
    if scheduler is None and not workers:
        return None
    from distributed import Client, LocalCluster

    if scheduler is not None:
        return Client(scheduler)
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=threads_per_worker, processes=True, dashboard_address=":0", silence_logs=40,
    )
    return Client(cluster)


def close_client(client: Any) -> None:
    cluster = getattr(client, "cluster", None)
    client.close()
    if cluster is not None:
        cluster.close()


__all__ = ["RegionOptions", "RegionSummary", "is_region_spec", "list_scenes", "predict_region", "scene_bands", "score_band"]
