"""The `score_map` stage: a scene's map scored against its known landslides -> metrics/map.json + a figure.

- **Pixels**: over the valid pixels (inside the swath in truth.tif and scored in the map; the share
  of the swath the map scores is reported as ``coverage``), a pixel is predicted a landslide when
  its probability is at or above the map's threshold (the bundle's, recorded in the map's
  ``LANDSLIDE_THRESHOLD`` tag): precision, recall, F1 and IoU of the landslide class (scikit-learn).
- **Objects**: a true landslide (a truth.gpkg polygon) is found when a predicted polygon
  (maps/scene.gpkg) overlaps it, i.e. their intersection has an area; a predicted polygon is right
  when it overlaps a true one. ``recall`` = found / n_true, ``precision`` = right / n_pred.
- **Figure** (plots/map/scene.png): the scene in true colour, the truth outlined on it, the
  probability map, and the predicted polygons over the truth.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landslide_dvc.core.bands import rgb_names
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.geo import Georef, read_features
from landslide_dvc.core.io import atomic_paths
from landslide_dvc.formats.scene import SCENE_FILE, Truth, read_truth

THRESHOLD_TAG = "LANDSLIDE_THRESHOLD"


def pixel_scores(probability: np.ndarray, truth: Truth, threshold: float) -> dict[str, Any]:
    """Precision, recall, F1 and IoU of the landslide pixels at ``threshold``, over the valid pixels."""
    from sklearn.metrics import jaccard_score, precision_recall_fscore_support

    scored = np.isfinite(probability)
    valid = truth.valid & scored
    if not valid.any():
        raise DataError("the map scores no pixel inside the scene's swath; check that map and truth are the same scene")
    actual = truth.mask[valid] == 1
    predicted = probability[valid] >= threshold
    precision, recall, f1, _ = precision_recall_fscore_support(actual, predicted, average="binary", zero_division=0)
    iou = jaccard_score(actual, predicted, zero_division=0)
    return {
        "precision": round(float(precision), 6), "recall": round(float(recall), 6), "f1": round(float(f1), 6),
        "iou": round(float(iou), 6), "n_valid": int(valid.sum()),
        "coverage": round(float(valid.sum() / truth.valid.sum()), 6),
        "landslide_share": round(float(actual.mean()), 6),
    }


def overlapping(sources: Sequence[Any], targets: Sequence[Any]) -> np.ndarray:
    """(len(sources),) bool: each source polygon overlaps (shares area with) some target polygon."""
    from shapely import STRtree

    hit = np.zeros(len(sources), bool)
    if not len(sources) or not len(targets):
        return hit
    tree = STRtree(list(targets))
    pairs = tree.query(list(sources), predicate="intersects")  # (2, k): source index, target index
    for source, target in zip(*pairs):
        if not hit[source] and sources[source].intersection(targets[target]).area > 0:
            hit[source] = True
    return hit


def object_scores(true_polygons: Sequence[Any], predicted_polygons: Sequence[Any]) -> dict[str, Any]:
    """Object recall (true landslides found) and precision (predicted polygons right), with the counts."""
    found = overlapping(true_polygons, predicted_polygons)
    right = overlapping(predicted_polygons, true_polygons)
    return {
        "recall": round(float(found.mean()), 6) if len(found) else 0.0,
        "precision": round(float(right.mean()), 6) if len(right) else 0.0,
        "n_true": len(true_polygons), "n_pred": len(predicted_polygons),
        "n_found": int(found.sum()), "n_right": int(right.sum()),
    }


def read_probability_map(path: Path) -> tuple[np.ndarray, Georef, float]:
    """A map `predict` wrote: probability (H, W) float32 with NaN where unscored, its grid and threshold."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            probability = src.read(1, masked=True).astype(np.float32).filled(np.nan)
            georef, tags = Georef(src.crs, src.transform), src.tags()
    except RasterioIOError:
        raise DataError(f"{path} not found or not a GeoTIFF; run map_scene first") from None
    if THRESHOLD_TAG not in tags:
        raise DataError(f"{path} has no {THRESHOLD_TAG} tag; it was not written by `landslide-dvc predict`, rerun map_scene")
    return probability, georef, float(tags[THRESHOLD_TAG])


def check_same_grid(probability: np.ndarray, georef: Georef, truth: Truth, map_path: Path, truth_dir: Path) -> None:
    if probability.shape != truth.mask.shape or georef.transform != truth.georef.transform or georef.crs != truth.georef.crs:
        raise DataError(
            f"{map_path} ({probability.shape[1]} x {probability.shape[0]} px, {georef.crs}) is not on the grid of "
            f"{truth_dir} ({truth.mask.shape[1]} x {truth.mask.shape[0]} px, {truth.georef.crs}); map that scene"
        )


def scene_rgb(scene_path: Path) -> np.ndarray:
    """(H, W, 3) true colour in [0, 1], stretched between the 2nd and 98th percentiles; no data grey."""
    import rasterio

    with rasterio.open(scene_path) as src:
        names = [d or "" for d in src.descriptions]
        chosen = rgb_names(names)
        if chosen is None:
            raise DataError(f"{scene_path} names no red, green and blue bands ({', '.join(names)}); write band descriptions")
        bands = src.read([names.index(n) + 1 for n in chosen], masked=True)
    rgb = np.empty(bands.shape[1:] + (3,), np.float32)
    for c, band in enumerate(bands):
        low, high = np.percentile(band.compressed(), [2, 98]) if band.count() else (0.0, 1.0)
        rgb[..., c] = np.clip((band.filled(low) - low) / max(high - low, 1e-12), 0.0, 1.0)
    rgb[np.ma.getmaskarray(bands).any(axis=0)] = 0.5
    return rgb


def _draw_polygons(ax: Any, polygons: Sequence[Any], georef: Georef, colour: str) -> None:
    inverse = ~georef.transform
    for polygon in polygons:
        for ring in [polygon.exterior, *polygon.interiors]:
            xs, ys = (np.asarray(v) for v in ring.xy)
            cols = inverse.a * xs + inverse.b * ys + inverse.c
            rows = inverse.d * xs + inverse.e * ys + inverse.f
            ax.plot(cols - 0.5, rows - 0.5, color=colour, linewidth=0.7)  # pixel edges lie at half pixels


def plot_scene_map(
    path: Path, rgb: np.ndarray, truth: Truth, probability: np.ndarray, predicted: Sequence[Any], metrics: dict[str, Any],
    title: str,
) -> None:
    """Four panels: scene, truth outlines, probability, predicted polygons over the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(20, 5.6), constrained_layout=True)
    axes[0].imshow(rgb)
    axes[0].set_title("scene (true colour; grey: no data)")
    axes[1].imshow(rgb)
    _draw_polygons(axes[1], truth.polygons, truth.georef, "red")
    axes[1].set_title(f"known landslides ({len(truth.polygons)})")
    shown = axes[2].imshow(np.ma.masked_invalid(probability), vmin=0.0, vmax=1.0, cmap="magma")
    axes[2].set_facecolor("0.6")
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.02, label="landslide probability")
    axes[2].set_title("probability (grey: not scored)")
    axes[3].imshow(rgb)
    _draw_polygons(axes[3], truth.polygons, truth.georef, "red")
    _draw_polygons(axes[3], predicted, truth.georef, "cyan")
    pixel, objects = metrics["pixel"], metrics["objects"]
    axes[3].set_title(
        f"predicted (cyan, {objects['n_pred']}) vs known (red)\npixel F1 {pixel['f1']:.3f}, IoU {pixel['iou']:.3f}; "
        f"objects found {objects['n_found']}/{objects['n_true']}, right {objects['n_right']}/{objects['n_pred']}"
    )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title)
    fig.savefig(path, dpi=80, format="png")
    plt.close(fig)


def run_score_map(
    map_path: Path, polygons_path: Path, scene_dir: Path, out_metrics: Path, out_figure: Path, title: str
) -> dict[str, Any]:
    """The stage: score the map against the scene's truth; write metrics and figure together."""
    probability, georef, threshold = read_probability_map(map_path)
    truth = read_truth(scene_dir)
    check_same_grid(probability, georef, truth, map_path, scene_dir)
    predicted, _, _ = read_features(polygons_path, ["area_m2", "mean_prob", "max_prob"])
    metrics: dict[str, Any] = {
        "threshold": threshold,
        "pixel": pixel_scores(probability, truth, threshold),
        "objects": object_scores(truth.polygons, predicted),
        "scene": {"height_px": int(probability.shape[0]), "width_px": int(probability.shape[1]),
                  "valid_km2": round(float(truth.valid.sum() * abs(georef.transform.a * georef.transform.e)) / 1e6, 4)},
    }
    rgb = scene_rgb(scene_dir / SCENE_FILE)
    out_figure.parent.mkdir(parents=True, exist_ok=True)
    out_metrics.parent.mkdir(parents=True, exist_ok=True)
    with atomic_paths(out_metrics, out_figure) as (tmp_metrics, tmp_figure):
        tmp_metrics.write_text(json.dumps(metrics, indent=2) + "\n")
        plot_scene_map(tmp_figure, rgb, truth, probability, predicted, metrics, title)
    return metrics
