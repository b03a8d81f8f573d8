"""`landslide-dvc predict`: a model bundle applied to new patches, a Zindi-layout test folder, or a scene.

Inputs (the kind is told by the path):
  folder with Test.csv   the challenge layout: a submission with the sample file's header and rows
                         (an ID listed twice is scored once and written twice, as `submit` does)
  other folder           every {ID}.npy below it, (64, 64, 12) in the Zindi band order and the
                         bundle's optical scale -> CSV of ID, probability, label
  .tif/.tiff file        a 12-band GeoTIFF in the Zindi band order -> 64 x 64 windows every
                         ``stride`` pixels -> probability GeoTIFF (same CRS and transform, each pixel
                         the mean over the scored windows covering it) + GeoJSON of the windows at
                         or above the bundle's threshold
Scene windows that touch a no-data pixel (the raster's mask or nodata value, or NaN/Inf) are not
scored; pixels that no scored window covers are no-data (NaN) in the map, never "no landslide".
Patches go through the bundle's own preprocessing (`Bundle.preprocess`: the pipeline's
`raw_to_channels` and `normalize`'s `apply_statistics`) in chunks, with a progress bar.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from landslide_dvc.core.bands import N_RAW_BANDS, PATCH_SIZE
from landslide_dvc.core.channels import check_optical_scale
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.io import atomic_path, atomic_paths
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
from landslide_dvc.core.submission import submission_rows, write_submission
from landslide_dvc.serve.bundle import Bundle

SCENE_SUFFIXES = (".tif", ".tiff")
PATCHES_PER_CHUNK = 2048  # patches preprocessed and scored together (bounds memory, keeps batches full)


def _progress(total: int, what: str) -> tqdm:
    return tqdm(total=total, desc=f"predict {what}", unit="patch", file=sys.stderr, mininterval=1.0)


def score_chunks(bundle: Bundle, chunks: Iterator[np.ndarray], device: torch.device, batch_size: int, source: str, bar: tqdm) -> np.ndarray:
    """Scores of raw patch chunks (each (n, 12, 64, 64)); the optical scale is checked on the first."""
    scores = []
    for k, raw in enumerate(chunks):
        if k == 0:
            check_optical_scale(raw, bundle.optical_scale, f"{source} (the bundle's optical_scale)")
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

    def chunks() -> Iterator[np.ndarray]:
        for start in range(0, len(ids), PATCHES_PER_CHUNK):
            yield np.stack([load_patch(files[i]).transpose(2, 0, 1) for i in ids[start : start + PATCHES_PER_CHUNK]])

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

    def chunks() -> Iterator[np.ndarray]:
        for start in range(0, len(ids), PATCHES_PER_CHUNK):
            yield load_images(root, TEST_DIR, ids[start : start + PATCHES_PER_CHUNK], TEST_CSV)

    with _progress(len(ids), "test images") as bar:
        scores = score_chunks(bundle, chunks(), device, batch_size, str(root / TEST_DIR), bar)
    labels = (scores >= bundle.threshold).astype(np.int8)
    rows = submission_rows(ids, labels, layout.order, layout.columns)
    with atomic_path(out) as tmp:
        write_submission(tmp, layout.columns, rows)
    return f"{len(rows)} submission rows for {len(ids)} test images, {int(labels.sum())} predicted landslides -> {out}"


# ----------------------------------------------------------------------------------------------
# Scenes


def window_offsets(size: int, stride: int) -> list[int]:
    """Window starts along one axis: every ``stride`` pixels, plus one flush with the far edge."""
    offsets = list(range(0, size - PATCH_SIZE + 1, stride))
    if offsets[-1] != size - PATCH_SIZE:
        offsets.append(size - PATCH_SIZE)
    return offsets


def open_scene(path: Path):  # noqa: ANN201 - a rasterio dataset
    """Open a 12-band GeoTIFF, refusing other band counts and non-real-valued bands in one line."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        raise DataError(f"{path} is not a readable raster ({str(exc).splitlines()[0]}); give a 12-band GeoTIFF") from None
    if src.count != N_RAW_BANDS:
        src.close()
        raise DataError(
            f"{path} has {src.count} bands, expected {N_RAW_BANDS} in the Zindi order (Red, Green, Blue, NIR, DVV, ..., ADVH); "
            f"stack the bands into one 12-band GeoTIFF"
        )
    bad = [d for d in src.dtypes if str(d).startswith("complex") or np.dtype(d).kind not in "iuf"]
    if bad:
        src.close()
        raise DataError(f"{path} has non-numeric (or complex) bands of type {bad[0]}; write the bands as real numbers (e.g. float32)")
    if src.height < PATCH_SIZE or src.width < PATCH_SIZE:
        src.close()
        raise DataError(f"{path} is {src.width} x {src.height} px, smaller than one {PATCH_SIZE} x {PATCH_SIZE} window")
    return src


def strip_windows(src, row: int, cols: list[int]) -> tuple[np.ndarray, list[int]]:  # noqa: ANN001
    """The fully valid windows (n, 12, 64, 64) of the strip starting at ``row``, and their columns."""
    from rasterio.windows import Window

    window = Window(0, row, src.width, PATCH_SIZE)
    strip = src.read(window=window, out_dtype="float32")
    invalid = (src.read_masks(window=window) == 0).any(axis=0) | ~np.isfinite(strip).all(axis=0)
    bad_per_column = np.concatenate([[0], np.cumsum(invalid.sum(axis=0))])
    keep = [c for c in cols if bad_per_column[c + PATCH_SIZE] == bad_per_column[c]]
    if not keep:
        return np.empty((0, N_RAW_BANDS, PATCH_SIZE, PATCH_SIZE), np.float32), []
    return np.stack([strip[:, :, c : c + PATCH_SIZE] for c in keep]), keep


@dataclass
class SceneResult:
    probability: np.ndarray  # (H, W) float32, NaN where no scored window covers the pixel
    windows: list[tuple[int, int, float]]  # (row, col, score) of every scored window
    n_windows: int  # windows on the grid, scored or skipped


def score_scene(src, bundle: Bundle, stride: int, device: torch.device, batch_size: int, source: str) -> SceneResult:  # noqa: ANN001
    """Score every fully valid window; each pixel's probability is the mean over its scored windows."""
    rows, cols = window_offsets(src.height, stride), window_offsets(src.width, stride)
    total = np.zeros((src.height, src.width), np.float64)
    count = np.zeros((src.height, src.width), np.uint16)
    windows: list[tuple[int, int, float]] = []
    pending: list[np.ndarray] = []
    where: list[tuple[int, int]] = []
    checked = False

    def flush() -> None:
        nonlocal checked
        raw = np.concatenate(pending)
        if not checked:
            check_optical_scale(raw, bundle.optical_scale, f"{source} (the bundle's optical_scale)")
            checked = True
        for (r, c), score in zip(where, bundle.score(raw, device, batch_size)):
            total[r : r + PATCH_SIZE, c : c + PATCH_SIZE] += score
            count[r : r + PATCH_SIZE, c : c + PATCH_SIZE] += 1
            windows.append((r, c, float(score)))
        bar.update(len(raw))
        pending.clear()
        where.clear()

    with _progress(len(rows) * len(cols), "windows") as bar:
        for r in rows:
            found, kept = strip_windows(src, r, cols)
            bar.update(len(cols) - len(kept))  # skipped (no-data) windows count as done
            if len(kept):
                pending.append(found)
                where.extend((r, c) for c in kept)
            if sum(len(p) for p in pending) >= PATCHES_PER_CHUNK:
                flush()
        if pending:
            flush()
    with np.errstate(invalid="ignore", divide="ignore"):
        probability = np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)
    return SceneResult(probability, windows, len(rows) * len(cols))


def window_polygon(transform, row: int, col: int) -> list[list[float]]:  # noqa: ANN001
    corners = [(col, row), (col + PATCH_SIZE, row), (col + PATCH_SIZE, row + PATCH_SIZE), (col, row + PATCH_SIZE), (col, row)]
    return [list(map(float, transform @ corner)) for corner in corners]


def windows_geojson(src, windows: list[tuple[int, int, float]], threshold: float) -> dict:  # noqa: ANN001
    """A FeatureCollection of the windows scored at or above ``threshold``, in the scene's CRS."""
    features = [
        {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [window_polygon(src.transform, r, c)]},
            "properties": {"probability": score, "row": r, "col": c},
        }
        for r, c, score in windows
        if score >= threshold
    ]
    collection: dict = {"type": "FeatureCollection", "features": features}
    if src.crs is not None:  # coordinates are in the scene's CRS (RFC 7946 readers assume WGS 84 without it)
        collection["crs"] = {"type": "name", "properties": {"name": src.crs.to_string()}}
    return collection


def write_scene_outputs(src, result: SceneResult, threshold: float, out: Path, geojson: Path) -> int:  # noqa: ANN001
    """The probability GeoTIFF on ``src``'s grid and the GeoJSON, together (atomically); returns the feature count."""
    import rasterio

    profile = {
        "driver": "GTiff", "width": src.width, "height": src.height, "count": 1, "dtype": "float32",
        "crs": src.crs, "transform": src.transform, "nodata": float("nan"),
        "compress": "deflate", "tiled": True, "blockxsize": 256, "blockysize": 256,
    }
    collection = windows_geojson(src, result.windows, threshold)
    with atomic_paths(out, geojson) as (tmp_tif, tmp_json):
        with rasterio.open(tmp_tif, "w", **profile) as dst:
            dst.write(result.probability, 1)
            dst.set_band_description(1, "landslide probability (mean over overlapping windows)")
        tmp_json.write_text(json.dumps(collection) + "\n")
    return len(collection["features"])


def predict_scene(
    bundle: Bundle, scene: Path, out: Path, geojson: Path, stride: int, device: torch.device, batch_size: int
) -> str:
    """Probability GeoTIFF (same grid as ``scene``) and GeoJSON of windows at or above the threshold."""
    if stride < 1:
        raise DataError(f"--stride {stride} must be >= 1 pixel")
    with open_scene(scene) as src:
        result = score_scene(src, bundle, stride, device, batch_size, str(scene))
        n_above = write_scene_outputs(src, result, bundle.threshold, out, geojson)
    return (
        f"{len(result.windows)} of {result.n_windows} windows scored (the rest touch no-data), "
        f"{n_above} at or above {bundle.threshold:.3f} -> {out}, {geojson}"
    )


def run_predict(
    bundle: Bundle, path: Path, out: Path, *, device: torch.device, batch_size: int, stride: int, geojson: Path | None
) -> str:
    """Dispatch on the kind of ``path``; returns the summary line."""
    if path.is_dir():
        if (path / TEST_CSV).is_file():
            return predict_zindi(bundle, path, out, device, batch_size)
        return predict_patch_folder(bundle, path, out, device, batch_size)
    if path.is_file() and path.suffix.lower() in SCENE_SUFFIXES:
        return predict_scene(bundle, path, out, geojson or out.with_suffix(".geojson"), stride, device, batch_size)
    if not path.exists():
        raise DataError(f"{path} not found; give a folder of .npy patches, a Zindi-layout folder or a GeoTIFF")
    raise DataError(f"{path} is neither a folder nor a .tif/.tiff scene; give a folder of .npy patches, a Zindi folder or a GeoTIFF")
