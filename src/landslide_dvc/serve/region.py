"""`landslide-dvc predict` over many scenes: scene strips as tasks, in one process or on a Dask cluster.

- **Scenes**: a folder's .tif/.tiff files, a glob pattern, a text file listing one scene path per line
  (UTF-8, with or without a BOM, LF or CRLF; blank lines and ``#`` comment lines are skipped; relative
  paths are relative to the list's folder), or several paths. Maps an earlier run wrote into the out
  folder are never taken as scenes, so the same command run again resumes. Every scene gives
  ``OUT/<stem>.tif`` (the probability COG) and ``OUT/<stem>.gpkg`` as the single-scene path writes them,
  then ``OUT/<stem>.json``, its manifest, written last; ``OUT/landslides.gpkg`` gathers every scene's
  polygons with a ``scene`` column, in the first scene's CRS (the others' polygons are reprojected).
- **Never the user's files**: the out folder is created and probed for writing before any work. The
  region layer is written only when a scene was mapped, and only where no file is or where predict
  wrote it before (its layer and columns say so); a scene named ``landslides`` (the region layer's
  name) and a scene whose outputs would replace files predict did not write are refused up front.
- **Tasks** are row blocks of a scene: the pixel rows from one window row to the next block's first window
  row, scored by every window that touches them (the block's own window rows plus the halo of windows
  starting up to one window above). Each block blends its windows in the single-scene order (row by
  row, column by column) on its own accumulators, so every pixel adds the same tiles in the same
  order as `serve.predict.score_scene` and the blocks' maps, stacked, equal its map bit for bit
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

from landslide_dvc.core.bundle_files import MANIFEST
from landslide_dvc.core.devices import select_device
from landslide_dvc.core.errors import DataError, LandslideError
from landslide_dvc.core.geo import POLYGON_LAYER, Georef, read_features, write_features
from landslide_dvc.core.io import atomic_path, ensure_output_folder, file_sha256
from landslide_dvc.core.patches import TEST_CSV
from landslide_dvc.core.raster import DeclaredScaling
from landslide_dvc.core.runtime import use_threads
from landslide_dvc.serve.blend import TAPER_FLOOR
from landslide_dvc.serve.bundle import load_bundle
from landslide_dvc.serve.maps import MapFiles, outputs_written, staged_outputs, write_map_outputs
from landslide_dvc.serve.predict import SCENE_SUFFIXES, MapOptions, map_source, scene_map, scene_terrain
from landslide_dvc.serve.scene_reader import open_scene, window_offsets
from landslide_dvc.serve.stac import COLLECTION_FILE, MAP_PROPERTY, region_collection, write_json
from landslide_dvc.serve.strips import SceneModel, blend_windows

REGION_LAYER_FILE = "landslides.gpkg"
STRIP_ROWS = 16  # window rows per task: about 16 x 340 windows on a 10,980 px Sentinel-2 tile
POLYGON_COLUMNS = ("area_m2", "mean_prob", "max_prob", "mean_uncertainty")
GLOB_CHARACTERS = set("*?[")
MAP_TAG = "LANDSLIDE_BUNDLE_KIND"  # in every map predict writes (`serve.predict.map_tags`)


@dataclass(frozen=True)
class RegionOptions:
    """What decides a map's bytes (kept in every scene's manifest), and the device preference."""

    stride: int
    batch_size: int
    threads: int  # torch intra-op threads per task
    device: str  # auto, cpu, cuda, cuda:auto: chosen by each worker process
    window_combination: str | None = None  # blend or intersection (`serve.blend`); None: the bundle kind's default
    dem: str | None = None  # a DEM for the slope rule (`serve.predict.MapOptions`); its sha256 joins the key
    smooth: int = 0  # passes of outline smoothing
    datetime: str | None = None  # the scenes' acquisition date where they state none (their Items' dates)

    def map_options(self) -> MapOptions:
        return MapOptions(None if self.dem is None else Path(self.dem), self.smooth, self.datetime)


@dataclass(frozen=True)
class RowBlock:
    """A task: pixel rows [top, bottom) of a scene, and the window rows that touch them."""

    index: int
    top: int
    bottom: int
    window_rows: tuple[int, ...]
    owned_rows: tuple[int, ...]  # the window rows this block counts (each window row is counted once)


@dataclass
class RowBlockResult:
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
    layer_written: bool = False  # landslides.gpkg written in this run (only when a scene was mapped)
    layer_error: str = ""  # why landslides.gpkg could not be written (the scenes' outputs stand)
    n_items: int = 0  # scenes' STAC Items in collection.json (scenes with acquisition dates)

    def line(self, out_dir: Path) -> str:
        scenes = f"{len(self.done)} scenes mapped, {len(self.skipped)} already done, {len(self.failed)} failed"
        if self.layer_error:
            return f"{scenes}; the region layer was not written: {self.layer_error}"
        if not self.layer_written:
            return f"{scenes}; no scene mapped, so no region layer written"
        collection = f", {self.n_items} STAC Items -> {out_dir / COLLECTION_FILE}" if self.n_items else ""
        return f"{scenes}; {self.n_regions} regions -> {out_dir / REGION_LAYER_FILE}{collection}"


# ----------------------------------------------------------------------------------------------
# Scenes and row blocks


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


def list_scenes(paths: Sequence[Path], out_dir: Path | None = None) -> list[Path]:
    """The scenes named by folders, globs, .txt lists or plain paths, in order; stems must be unique.

    ``out_dir``: the run's out folder; the maps an earlier run wrote there are not scenes.
    """
    scenes: list[Path] = []
    for path in paths:
        if path.is_dir():
            scenes += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SCENE_SUFFIXES)
        elif path.is_file() and path.suffix.lower() == ".txt":
            scenes += read_scene_list(path)
        elif GLOB_CHARACTERS & set(str(path)) and not path.exists():
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            if not found:
                raise DataError(f"the pattern {path} matches no file; quote it and check the folder")
            scenes += found
        else:
            scenes.append(path)
    # however they were named (a folder, a glob, a list, a glob the shell expanded), an earlier run's maps are no scenes
    scenes = [p for p in scenes if not is_earlier_map(p, out_dir)]
    if not scenes:
        raise DataError(f"{', '.join(map(str, paths))} names no .tif/.tiff scene; give a folder of scenes, a glob or a list")
    stems: dict[str, Path] = {}
    for scene in scenes:
        if scene.stem in stems:
            raise DataError(f"{stems[scene.stem]} and {scene} share the name {scene.stem}, so their maps would collide; rename one")
        stems[scene.stem] = scene
    return scenes


def read_scene_list(path: Path) -> list[Path]:
    """The scenes of a list file as editors save it: UTF-8 with or without a BOM (or UTF-16 with one),
    LF or CRLF line ends, blank lines and ``#`` comment lines; relative paths from the list's folder."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-16") if data[:2] in (b"\xff\xfe", b"\xfe\xff") else data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; save the list as UTF-8 (one scene path a line)") from None
    scenes = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not line_is_path(entry):
            continue
        scene = Path(entry) if Path(entry).is_absolute() else path.parent / entry
        if not scene.is_file():
            raise DataError(f"{path} line {number}: {scene} not found; fix the line (relative paths are relative to the list's folder)")
        scenes.append(scene)
    return scenes


def line_is_path(line: str) -> bool:
    return bool(line) and line not in (".",) and not line.startswith("#")


def is_earlier_map(path: Path, out_dir: Path | None) -> bool:
    """A probability map an earlier run of predict wrote into ``out_dir`` (its tags say so)."""
    if out_dir is None or not out_dir.is_dir() or path.parent.resolve() != out_dir.resolve():
        return False
    return has_map_tags(path)


def has_map_tags(path: Path) -> bool:
    import rasterio
    from rasterio.errors import RasterioError

    try:
        with rasterio.open(path) as src:
            return MAP_TAG in src.tags()
    except (RasterioError, OSError):
        return False


def is_region_layer(path: Path) -> bool:
    """A region layer written by predict: one layer, ``landslides``, with the columns scene and POLYGON_COLUMNS."""
    return has_polygon_layer(path, ("scene", *POLYGON_COLUMNS))


def has_polygon_layer(path: Path, columns: Sequence[str]) -> bool:
    import pyogrio

    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
        info = pyogrio.read_info(path, layer=POLYGON_LAYER)
    except Exception:  # noqa: BLE001 - pyogrio raises its own errors for anything that is not a vector file
        return False
    return layers == [POLYGON_LAYER] and tuple(info["fields"]) == tuple(columns)


def is_earlier_output(path: Path) -> bool:
    """A scene's output predict wrote before: a map with predict's tags, its polygons, or its manifest."""
    if path.suffix.lower() in SCENE_SUFFIXES:
        return has_map_tags(path)
    if path.suffix.lower() == ".gpkg":
        return has_polygon_layer(path, POLYGON_COLUMNS)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if isinstance(record, dict) and record.get("type") == "Feature":  # a map's STAC Item (`serve.stac`)
        return (record.get("properties") or {}).get(MAP_PROPERTY) is True
    if isinstance(record, dict) and record.get("type") == "Collection":  # the region's Collection
        return any(link.get("rel") == "item" for link in record.get("links", [])) and "landslide maps" in str(record.get("description"))
    return isinstance(record, dict) and {"scene", "key", "outputs"} <= set(record)


def check_region_outputs(out_dir: Path, scenes: Sequence[Path]) -> None:
    """Refuse, before any work, a run that would replace a file predict did not write, in one line."""
    layer = out_dir / REGION_LAYER_FILE
    collection = out_dir / COLLECTION_FILE
    for scene in scenes:
        files, manifest = outputs_of(out_dir, scene)
        if files.polygons.name.casefold() == REGION_LAYER_FILE.casefold():
            raise DataError(
                f"{scene} would write its polygons to {layer}, the region layer's name; rename the scene "
                f"(the name {layer.stem} is the region's)"
            )
        if manifest.name.casefold() == COLLECTION_FILE.casefold():
            raise DataError(
                f"{scene} would write its manifest to {collection}, the region's STAC Collection; rename the scene "
                f"(the name {collection.stem} is the region's)"
            )
    if collection.exists() and not is_earlier_output(collection):
        raise DataError(f"{collection} exists and is not a Collection written by predict; move it or choose another --out")
    if layer.exists() and not is_region_layer(layer):
        raise DataError(
            f"{layer} exists and is not a region layer written by predict (layer {POLYGON_LAYER} with the columns scene, "
            f"{', '.join(POLYGON_COLUMNS)}); move it or choose another --out: predict never replaces a file it did not write"
        )


def foreign_output(out_dir: Path, scene: Path) -> Path | None:
    """The first of the scene's output paths that holds a file predict did not write, or None."""
    files, manifest = outputs_of(out_dir, scene)
    for path in (*files.paths, manifest):
        if path.exists() and not is_earlier_output(path):
            return path
    return None


def scene_row_blocks(height: int, window: int, stride: int, strip_rows: int = STRIP_ROWS) -> list[RowBlock]:
    """The scene's tasks: ``strip_rows`` window rows each, plus the windows above that reach into them."""
    rows = window_offsets(height, stride, window)
    blocks = []
    for index, start in enumerate(range(0, len(rows), strip_rows)):
        owned = rows[start : start + strip_rows]
        top = 0 if start == 0 else owned[0]
        bottom = height if start + strip_rows >= len(rows) else rows[start + strip_rows]
        touching = tuple(r for r in rows if r < bottom and r + window > top)
        blocks.append(RowBlock(index, top, bottom, touching, tuple(owned)))
    return blocks


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


def score_row_block(scene: str, bundle_path: str, bundle_sha256: str, options: RegionOptions, block: RowBlock) -> RowBlockResult:
    """One task: the block's windows scored and blended by `serve.strips.blend_windows`, the pass that
    `score_scene` makes over the whole scene, on the block's own accumulators; its rows of the map."""
    use_threads(options.threads)
    model, device = worker_model(bundle_path, bundle_sha256, options.device)
    with open_scene(Path(scene), model.bands, model.window, kind=model.kind) as src:
        cols = window_offsets(src.width, options.stride, model.window)
        # the scene's first block checks its first strip's scale as a whole, as score_scene does
        blended = blend_windows(src, model, block.window_rows, cols, device, options.batch_size, scene, check_whole=block.index == 0)
    base = block.window_rows[0]
    own = slice(block.top - base, block.bottom - base)
    probability = blended.blender.combined(options.window_combination or model.window_combination)[own]
    n_scored = sum(r in block.owned_rows for r, _ in blended.scored)
    return RowBlockResult(block.top, probability, blended.blender.uncertainty()[own], n_scored, len(block.owned_rows) * len(cols))


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
        **({"dem_sha256": file_sha256(Path(options.dem))} if options.dem else {}),
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
    expected = written.get("outputs", {})  # the map's Item only where the scene has dates
    required = {files.cog.name, files.polygons.name}
    by_name = {p.name: p for p in files.paths}
    return required <= set(expected) and all(
        name in by_name and by_name[name].is_file() and file_sha256(by_name[name]) == digest for name, digest in expected.items()
    )


def write_manifest(
    out_dir: Path, scene: Path, key: dict[str, Any], n_scored: int, n_windows: int, n_regions: int, written: Sequence[Path],
) -> None:
    _, manifest = outputs_of(out_dir, scene)
    record = {
        "scene": str(scene), "key": key, "outputs": {p.name: file_sha256(p) for p in written},
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
    blocks: list[RowBlock]
    results: dict[int, RowBlockResult] = field(default_factory=dict)
    scaling: DeclaredScaling | None = None  # the scene's declared band scales and offsets (named in the map's tags)


RowBlockRunner = Callable[[list[tuple[ScenePlan, RowBlock]]], Iterable[tuple[ScenePlan, RowBlock, RowBlockResult | BaseException]]]


def run_in_process(tasks: list[tuple[ScenePlan, RowBlock]], bundle_path: str, bundle_sha: str, options: RegionOptions) -> Iterable[tuple[ScenePlan, RowBlock, RowBlockResult | BaseException]]:
    for plan, block in tasks:
        try:
            yield plan, block, score_row_block(str(plan.scene), bundle_path, bundle_sha, options, block)
        except Exception as exc:  # noqa: BLE001 - reported per scene; the other scenes go on
            yield plan, block, exc


def run_on_cluster(client: Any, tasks: list[tuple[ScenePlan, RowBlock]], bundle_path: str, bundle_sha: str, options: RegionOptions) -> Iterable[tuple[ScenePlan, RowBlock, RowBlockResult | BaseException]]:
    from distributed import as_completed

    futures = {}
    bundle_path = str(Path(bundle_path).resolve())  # workers elsewhere share the file system, not this process's folder
    for plan, block in tasks:
        # pure=False: a rerun after a failure must score again, never reuse a cached result by key
        future = client.submit(score_row_block, str(plan.scene.resolve()), bundle_path, bundle_sha, options, block, pure=False)
        futures[future] = (plan, block)
    for future in as_completed(futures):
        plan, block = futures.pop(future)
        try:
            yield plan, block, future.result()
        except Exception as exc:  # noqa: BLE001 - a bad scene, or a task that lost its worker too often
            yield plan, block, exc
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
    ensure_output_folder(out_dir, "--out")
    if model is None:  # the driver checks the bundle once and reads its window, bands, threshold
        model = load_bundle(bundle_path)
    options.map_options().check(model)
    scenes = list_scenes(paths, out_dir)
    check_region_outputs(out_dir, scenes)
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
            if not scene.is_file():
                raise DataError(f"{scene} not found; give an existing .tif/.tiff scene")
            if (foreign := foreign_output(out_dir, scene)) is not None:
                raise DataError(f"{foreign} exists and was not written by predict, and the scene's map would replace it; move it or choose another --out")
            key = scene_key(scene, bundle_sha, model, options)
            if is_done(out_dir, scene, key):
                summary.skipped.append(str(scene))
                continue
            with open_scene(scene, model.bands, model.window, kind=model.kind) as src:
                georef, height, width, scaling = Georef(src.crs, src.transform), src.height, src.width, DeclaredScaling.of(src)
            blocks = scene_row_blocks(height, model.window, options.stride, strip_rows)
            plans.append(ScenePlan(scene, key, georef, height, width, blocks, scaling=scaling))
        except (LandslideError, OSError) as exc:
            summary.failed[str(scene)] = one_line(exc)
    tasks = [(plan, block) for plan in plans for block in plan.blocks]
    n_windows = sum(len(window_offsets(p.width, options.stride, model.window)) * len(b.owned_rows) for p, b in tasks)
    source = (
        run_on_cluster(client, tasks, str(bundle_path), bundle_sha, options) if client is not None
        else run_in_process(tasks, str(bundle_path), bundle_sha, options)
    )
    scene_bar = tqdm(total=len(scenes), desc="predict scenes", unit="scene", file=sys.stderr, position=0)
    window_bar = tqdm(total=n_windows, desc="predict windows", unit="window", file=sys.stderr, position=1, mininterval=1.0)
    scene_bar.update(len(summary.skipped) + len(summary.failed))
    with scene_bar, window_bar:
        for plan, block, result in source:
            name = str(plan.scene)
            window_bar.update(len(window_offsets(plan.width, options.stride, model.window)) * len(block.owned_rows))
            if on_band is not None:
                on_band()
            if name in summary.failed:
                continue
            if isinstance(result, BaseException):
                summary.failed[name] = one_line(result)
                scene_bar.update()
                continue
            plan.results[block.index] = result
            if len(plan.results) == len(plan.blocks):
                try:
                    finish_scene(plan, model, options, out_dir)
                    summary.done.append(name)
                except (LandslideError, OSError) as exc:
                    summary.failed[name] = one_line(exc)
                plan.results.clear()  # the rows are written; free them
                scene_bar.update()
    finished = [s for s in scenes if str(s) in summary.done or str(s) in summary.skipped]
    if finished:  # a run that mapped nothing leaves the folder as it was
        try:
            summary.n_regions = write_region_layer(out_dir, finished)
            summary.layer_written = True
            summary.n_items = write_region_collection(out_dir, finished)
        except (LandslideError, OSError) as exc:  # the scenes' outputs stand; their summary is still printed
            summary.layer_error = one_line(exc)
    return summary


def finish_scene(plan: ScenePlan, model: SceneModel, options: RegionOptions, out_dir: Path) -> None:
    """The blocks stacked into the scene's map, its COG and polygons, then its manifest (last)."""
    blocks = [plan.results[b.index] for b in plan.blocks]
    probability = np.concatenate([b.probability for b in blocks])
    uncertainty = np.concatenate([b.uncertainty for b in blocks])
    files, _ = outputs_of(out_dir, plan.scene)
    map_options = options.map_options()
    with open_scene(plan.scene, model.bands, model.window, kind=model.kind) as src:
        terrain = scene_terrain(src, model, map_options)
        source = map_source(plan.scene, src, model, map_options)
    scored = scene_map(probability, uncertainty, plan.georef, model, options.stride, terrain, plan.scaling, options.smooth, source)
    n_regions = write_map_outputs(scored, files)
    written = [getattr(files, name) for name in outputs_written(scored, files)]
    write_manifest(out_dir, plan.scene, plan.key, sum(b.n_scored for b in blocks), sum(b.n_windows for b in blocks), n_regions, written)


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


def write_region_collection(out_dir: Path, scenes: Sequence[Path]) -> int:
    """The region's STAC Collection of the finished scenes' Items (`serve.stac`), where any has one; their count."""
    items = [files.item for files, _ in map(lambda s: outputs_of(out_dir, s), scenes) if files.item and files.item.is_file()]
    if not items:
        return 0
    with atomic_path(out_dir / COLLECTION_FILE) as tmp:
        write_json(tmp, region_collection(out_dir, items))
    return len(items)


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


__all__ = ["RegionOptions", "RegionSummary", "is_region_spec", "list_scenes", "predict_region", "scene_row_blocks", "score_row_block"]
