"""`landslide-dvc predict`: a model bundle applied to new patches, a Zindi-layout test folder, or a scene.

Either kind of bundle (`landslide_dvc.serve.bundle.load_bundle`): the classifier takes all three
inputs below; the segmentation bundle (the Landslide4Sense U-Net) maps scenes only, with its own
bands (the release's 14), window (128 px) and per-pixel probabilities.

Inputs (the kind is told by the path):
  folder with Test.csv   the challenge layout: a submission with the sample file's header and rows
                         (an ID listed twice is scored once and written twice, as `submit` does)
  other folder           every {ID}.npy below it, (64, 64, 12) in the Zindi band order and the
                         bundle's optical scale -> CSV of ID, probability, label
  .tif/.tiff file        a georeferenced GeoTIFF with the bundle's bands (classifier: 12, Zindi order;
                         segmentation: 14, Landslide4Sense order) -> windows of the bundle's size
                         (64 or 128 px) every ``stride`` pixels, blended with edge-tapered weights
                         (`landslide_dvc.serve.blend`) -> probability Cloud Optimized GeoTIFF (same
                         CRS and transform) + polygons of the regions at or above the bundle's
                         threshold (.gpkg next to it, or ``--polygons``; `landslide_dvc.serve.maps`)
Scene windows that touch a no-data pixel (the raster's mask or nodata value, or NaN/Inf) are not
scored; pixels that no scored window covers are no-data (NaN) in the map, never "no landslide".
Patches go through the bundle's own preprocessing (`Bundle.preprocess`: the pipeline's
`raw_to_channels` and `normalize`'s `apply_statistics`) in chunks, with a progress bar. Every
patch (every scene window) is checked against the bundle's optical scale on its own.

The scene path asks a bundle only for what `SceneModel` lists, so the U-Net, which predicts pixels,
plugs in beside the window classifier: its ``predict_tiles`` returns its own per-pixel tiles.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.io import atomic_path, ensure_output_folder, file_sha256
from landslide_dvc.core.patches import (
    SAMPLE_SUBMISSION_CSV,
    SUBMISSION_COLUMNS,
    TEST_CSV,
    TEST_DIR,
    index_npy_files,
    load_images,
    load_patch,
    read_table,
)
from landslide_dvc.core.raster import DeclaredScaling
from landslide_dvc.core.submission import submission_rows, write_submission
from landslide_dvc.serve.blend import TAPER_FLOOR
from landslide_dvc.serve.bundle import Bundle
from landslide_dvc.serve.maps import Georef, MapFiles, SceneMap, outputs_written, write_map_outputs
from landslide_dvc.serve.scene_reader import Dataset, dem_slope, open_scene, read_band, window_offsets
from landslide_dvc.serve.seg_bundle import SegBundle
from landslide_dvc.serve.stac import MapSource, parse_datetime, scene_dates
from landslide_dvc.serve.strips import SceneModel, TileBatch, blend_windows

SCENE_SUFFIXES = (".tif", ".tiff")
UNCERTAINTY_TAG = (
    "band 2: standard deviation of the votes behind each pixel ({votes}, each covering window's votes "
    "weighted {weighting}); 0 where every vote agrees"
)
UNCERTAINTY_WEIGHTING = {"blend": "as the window is in band 1", "intersection": "by the window's Hann weights"}
# LANDSLIDE_BLEND: how band 1 was made from the covering windows (`serve.blend`)
BLEND_TAG = {
    "blend": "Hann window weights at pixel centres, floor {floor:g}, stride {stride} px, window {window} px",
    "intersection": (
        "intersection: each pixel's probability is the lowest score of the windows covering it "
        "(stride {stride} px, window {window} px)"
    ),
}
VOTES = {"classifier": "every fold's head on each of {tta} TTA views", "segmentation": "the U-Net's {tta} TTA views"}
PATCHES_PER_CHUNK = 2048  # patches preprocessed and scored together (bounds memory, keeps batches full)


Chunk = tuple[list[str], np.ndarray]  # patch IDs and their raw patches (n, 12, 64, 64)


def _progress(total: int, what: str) -> tqdm:
    return tqdm(total=total, desc=f"predict {what}", unit="patch", file=sys.stderr, mininterval=1.0)


def score_chunks(bundle: Bundle, chunks: Iterator[Chunk], device: torch.device, batch_size: int, source: str, bar: tqdm) -> np.ndarray:
    """Scores of raw patch chunks; every patch's optical scale is checked, and the first chunk's as a whole."""
    scores = []
    for k, (ids, raw) in enumerate(chunks):
        bundle.check_scale(raw, [f"patch {i}" for i in ids], source, whole=k == 0)
        scores.append(bundle.score(raw, device, batch_size))
        bar.update(len(raw))
    return np.concatenate(scores) if scores else np.empty(0)


def write_scores_csv(path: Path, ids: list[str], scores: np.ndarray, threshold: float) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["ID", "probability", "label"])
        writer.writerows((i, repr(float(s)), int(s >= threshold)) for i, s in zip(ids, scores))


def predict_patch_folder(bundle: Bundle, folder: Path, out: Path, device: torch.device, batch_size: int) -> str:
    """Every .npy below ``folder`` -> ``out``: ID, probability, label (sorted by ID)."""
    files = index_npy_files(folder)
    if not files:
        raise DataError(f"{folder} holds no .npy patches; give a folder of (64, 64, 12) .npy files, a Zindi folder or a GeoTIFF")
    ids = sorted(files)

    def chunks() -> Iterator[Chunk]:
        for start in range(0, len(ids), PATCHES_PER_CHUNK):
            part = ids[start : start + PATCHES_PER_CHUNK]
            yield part, np.stack([load_patch(files[i]).transpose(2, 0, 1) for i in part])

    with _progress(len(ids), "patches") as bar:
        scores = score_chunks(bundle, chunks(), device, batch_size, str(folder), bar)
    write_scores_csv(out, ids, scores, bundle.threshold)
    return f"{len(ids)} patches, {int((scores >= bundle.threshold).sum())} predicted landslides -> {out}"


@dataclass(frozen=True)
class SubmissionLayout:
    """What a Zindi-layout test folder asks for: the IDs to score and the rows to write."""

    test_ids: list[str]  # unique, Test.csv order
    order: list[str]  # one ID per submission row (the sample file's rows, else Test.csv's)
    columns: list[str]  # header (the sample file's, else ID,Target)


def read_submission_layout(root: Path) -> SubmissionLayout:
    """Test.csv and the optional SampleSubmission.csv, read as `normalize` reads them."""
    test_rows = [row["ID"] for _, row in read_table(root / TEST_CSV, ["ID"]).rows]
    if not test_rows:
        raise DataError(f"{root / TEST_CSV} lists no test images; it needs a header line ID and one row per test image")
    test_ids = list(dict.fromkeys(test_rows))
    if not (root / SAMPLE_SUBMISSION_CSV).exists():
        return SubmissionLayout(test_ids, test_rows, list(SUBMISSION_COLUMNS))
    sample = read_table(root / SAMPLE_SUBMISSION_CSV, ["ID"])
    columns = [h for h in sample.header if h]
    if len(columns) != 2:
        raise DataError(f"{sample.path} header {','.join(sample.header)} is not 'ID,<target column>'; fix the file or remove it")
    order = [row["ID"] for _, row in sample.rows]
    if set(order) != set(test_ids):
        extra = sorted(set(order) ^ set(test_ids))[0]
        raise DataError(f"{sample.path} and {TEST_CSV} list different IDs (e.g. {extra}); the sample must cover exactly the test IDs")
    return SubmissionLayout(test_ids, order, columns)


def predict_zindi(bundle: Bundle, root: Path, out: Path, device: torch.device, batch_size: int) -> str:
    """A challenge submission for the test folder of a Zindi-layout dataset."""
    layout = read_submission_layout(root)
    ids = layout.test_ids

    def chunks() -> Iterator[Chunk]:
        for start in range(0, len(ids), PATCHES_PER_CHUNK):
            part = ids[start : start + PATCHES_PER_CHUNK]
            yield part, load_images(root, TEST_DIR, part, TEST_CSV)

    with _progress(len(ids), "test images") as bar:
        scores = score_chunks(bundle, chunks(), device, batch_size, str(root / TEST_DIR), bar)
    labels = (scores >= bundle.threshold).astype(np.int8)
    rows = submission_rows(ids, labels, layout.order, layout.columns)
    with atomic_path(out) as tmp:
        write_submission(tmp, layout.columns, rows)
    return f"{len(rows)} submission rows for {len(ids)} test images, {int(labels.sum())} predicted landslides -> {out}"


# ----------------------------------------------------------------------------------------------
# Scenes


@dataclass
class SceneResult:
    probability: np.ndarray  # (H, W) float32, NaN where no scored window covers the pixel
    n_scored: int  # windows scored
    n_windows: int  # windows on the grid, scored or skipped
    uncertainty: np.ndarray | None = None  # (H, W) float32: the spread of the votes behind each pixel (serve.blend)


TileSink = Callable[[Sequence[tuple[int, int]], np.ndarray], None]  # (row, col) per window, tiles (n, w, w)


def score_scene(
    src: Dataset, model: SceneModel, stride: int, device: torch.device, batch_size: int, source: str,
    *, floor: float = TAPER_FLOOR, on_tiles: TileSink | None = None,
) -> SceneResult:
    """Score every fully valid window and blend the tiles with edge-tapered weights (`serve.strips.blend_windows`,
    the region tasks' pass too). ``on_tiles`` also receives every batch of tiles (the benchmark blends a plain mean from them)."""
    w = model.window
    rows, cols = window_offsets(src.height, stride, w), window_offsets(src.width, stride, w)
    with _progress(len(rows) * len(cols), "windows") as bar:

        def on_batch(batch: TileBatch) -> None:
            if on_tiles is not None and batch.where:
                on_tiles(batch.where, batch.tiles.probability)
            bar.update(len(batch.where) + batch.skipped)  # skipped (no-data) windows count as done

        blended = blend_windows(src, model, rows, cols, device, batch_size, source, floor=floor, on_batch=on_batch)
    blender = blended.blender
    return SceneResult(blender.combined(model.window_combination), len(blended.scored), len(rows) * len(cols), blender.uncertainty())


def map_tags(
    model: SceneModel, stride: int, floor: float, scaling: DeclaredScaling | None = None, terrain: Terrain | None = None
) -> dict[str, str]:
    tags = {
        "LANDSLIDE_BUNDLE_KIND": model.kind,
        "LANDSLIDE_TTA_VIEWS": str(model.tta),
        "LANDSLIDE_THRESHOLD": repr(model.threshold),
        "LANDSLIDE_BLEND": BLEND_TAG[model.window_combination].format(floor=floor, stride=stride, window=model.window),
        "LANDSLIDE_UNCERTAINTY": UNCERTAINTY_TAG.format(
            votes=VOTES[model.kind].format(tta=model.tta), weighting=UNCERTAINTY_WEIGHTING[model.window_combination]
        ),
        "LANDSLIDE_RULES": f"polygons: {model.rules.describe()}",
    }
    if scaling is not None and not scaling.is_identity:  # a scene that declares none keeps today's bytes
        tags["LANDSLIDE_DECLARED_SCALING"] = f"applied before the bundle's scaling (value = raw x scale + offset): {scaling.describe()}"
    if terrain is not None and terrain.note:  # a slope from a DEM, or smoothed outlines, are named; the defaults keep the bytes
        tags["LANDSLIDE_RULES"] += f"; {terrain.note}"
    return tags


@dataclass(frozen=True)
class MapOptions:
    """predict's options for a scene's map beyond the bundle's rules: a DEM for the slope rule of scenes
    without a slope band (Zindi's), smoothing of the pixel-edge outlines (`core.terrain`), and the
    scene's acquisition date for the map's STAC Item where the scene states none (`serve.stac`)."""

    dem: Path | None = None  # its slope, in degrees, is what --min-slope limits
    smooth: int = 0  # passes of Chaikin's corner cutting (0: pixel-edge outlines)
    datetime: str | None = None  # YYYY-MM-DD or ISO date-time, over the scene's own

    def check(self, model: SceneModel) -> None:
        """Refuse, before any work, options the model's rules cannot use."""
        if self.smooth < 0:
            raise DataError(f"--smooth {self.smooth} must be >= 0 passes")
        if self.datetime is not None:
            parse_datetime(self.datetime, "--datetime")
        if self.dem is not None:
            if not self.dem.is_file():
                raise DataError(f"--dem {self.dem} not found; give a GeoTIFF of elevations in metres")
            if model.rules.min_slope is None:  # the limit must be in degrees: set with the DEM (the CLI insists)
                raise DataError("--dem needs --min-slope DEGREES: the slope limit the DEM's slope is held to")


@dataclass(frozen=True)
class Terrain:
    """The slope a scene's rules read, and what the map's tags say about it and the outlines."""

    slope: np.ndarray | None
    note: str = ""


def scene_terrain(src: Dataset, model: SceneModel, options: MapOptions) -> Terrain:
    """The slope band the model's slope rule reads (None without one), or the slope of ``options.dem``."""
    notes = [f"outlines smoothed by {options.smooth} passes of Chaikin's corner cutting"] if options.smooth else []
    if model.rules.min_slope is None:
        return Terrain(None, "; ".join(notes))
    if options.dem is not None:
        dem = dem_slope(options.dem, Georef(src.crs, src.transform), src.height, src.width)
        notes.insert(0, f"slope in degrees from the DEM {options.dem.name} (sha256 {file_sha256(options.dem)}, "
                        f"covering {100 * dem.coverage:.1f} % of the scene; no slope rule where it has no data)")
        return Terrain(dem.degrees, "; ".join(notes))
    return Terrain(read_band(src, model.bands, str(model.slope_band())), "; ".join(notes))


def scene_map(
    probability: np.ndarray, uncertainty: np.ndarray, georef: Georef, model: SceneModel, stride: int,
    terrain: Terrain | None = None, scaling: DeclaredScaling | None = None, smooth: int = 0,
    source: MapSource | None = None,
) -> SceneMap:
    """What a scored scene writes (`serve.maps.write_map_outputs`), for a single scene and a region's alike;
    ``terrain``: the slope the model's rules read (`scene_terrain`); ``scaling``: the scene's declared band
    scales and offsets, applied as it was read (named in the tags); ``smooth``: outline smoothing passes;
    ``source``: the scene, its dates and the bundle, for the map's STAC Item."""
    tags = map_tags(model, stride, TAPER_FLOOR, scaling, terrain)
    slope = None if terrain is None else terrain.slope
    return SceneMap(probability, georef, model.threshold, tags, uncertainty, model.rules, slope, smooth, source)


def map_source(scene: Path, src: Dataset, model: SceneModel, options: MapOptions) -> MapSource:
    """The scene, its acquisition dates (`serve.stac.scene_dates`) and the model's bundle folder."""
    bundle = getattr(model, "path", None)
    return MapSource(scene, scene_dates(scene, src.tags(), options.datetime), None if bundle is None else Path(bundle))


def check_scene_outputs(scene: Path, files: MapFiles, stride: int) -> None:
    """Refuse, before any work, outputs that cannot be written as asked."""
    if stride < 1:
        raise DataError(f"--stride {stride} must be >= 1 pixel")
    files.check()
    paths = [scene.resolve(), *(p.resolve() for p in files.paths)]
    if len(set(paths)) < len(paths):
        raise DataError(f"the scene, --out, --polygons and the map's Item must be different files ({scene}, {', '.join(map(str, files.paths))})")


def predict_scene(
    bundle: SceneModel, scene: Path, out: Path, polygons: Path, stride: int, device: torch.device, batch_size: int,
    options: MapOptions = MapOptions(),
) -> str:
    """Probability COG (same grid as ``scene``) and polygons of the regions at or above the threshold."""
    files = MapFiles.beside(out, polygons)
    check_scene_outputs(scene, files, stride)
    options.check(bundle)
    with open_scene(scene, bundle.bands, bundle.window, kind=bundle.kind) as src:
        terrain = scene_terrain(src, bundle, options)  # before scoring: a bad DEM or date is refused at once
        source = map_source(scene, src, bundle, options)
        result = score_scene(src, bundle, stride, device, batch_size, str(scene))
        georef, scaling = Georef(src.crs, src.transform), DeclaredScaling.of(src)
        scored = scene_map(result.probability, result.uncertainty, georef, bundle, stride, terrain, scaling, options.smooth, source)
        n_regions = write_map_outputs(scored, files)
    item = (
        f", {files.item} (STAC Item)" if "item" in outputs_written(scored, files)
        else " (no STAC Item: the scene states no acquisition date; give --datetime YYYY-MM-DD)"
    )
    return (
        f"{result.n_scored} of {result.n_windows} windows scored (the rest touch no-data), "
        f"{n_regions} regions ({bundle.rules.describe()}) -> {out}, {polygons}{item}"
    )


def run_predict(
    bundle: Bundle | SegBundle, path: Path, out: Path, *, device: torch.device, batch_size: int | None = None,
    stride: int | None = None, polygons: Path | None = None, options: MapOptions = MapOptions(),
) -> str:
    """Dispatch on the kind of ``path``; returns the summary line.

    ``batch_size`` defaults to the bundle's (256 patches for the classifier, 4 windows for the
    U-Net, so 32 images per pass with 8 views), ``stride`` to half the bundle's window (32 px for the classifier, 64 px for the U-Net),
    where the Hann weights of neighbouring windows sum to 1.
    """
    batch_size = bundle.default_batch_size if batch_size is None else batch_size
    stride = bundle.window // 2 if stride is None else stride
    polygons = polygons or out.with_suffix(".gpkg")
    if not path.exists():
        raise DataError(f"{path} not found; give a folder of .npy patches, a Zindi-layout folder or a GeoTIFF")
    for flag, target in (("--out", out), ("--polygons", polygons)):
        if target.is_dir():
            raise DataError(f"{flag} {target} is a folder; give a file path (a folder is for many scenes)")
        ensure_output_folder(target.parent, flag)  # before any work: the outputs can be written
    if path.is_dir():
        if isinstance(bundle, SegBundle):
            raise DataError(
                f"{path} is a folder, and the segmentation bundle {bundle.path} maps GeoTIFF scenes only; give it a "
                f"{len(bundle.bands)}-band scene (.tif), or score patches with a classifier bundle (--bundle models/bundle)"
            )
        if (path / TEST_CSV).is_file():
            return predict_zindi(bundle, path, out, device, batch_size)
        return predict_patch_folder(bundle, path, out, device, batch_size)
    if path.is_file() and path.suffix.lower() in SCENE_SUFFIXES:
        return predict_scene(bundle, path, out, polygons, stride, device, batch_size, options)
    raise DataError(f"{path} is neither a folder nor a .tif/.tiff scene; give a folder of .npy patches, a Zindi folder or a GeoTIFF")
