"""The `score_map` stage: a scene's map scored against its known landslides -> metrics/map.json + a figure.

- **Pixels**: over the valid pixels (inside the swath in truth.tif and scored in the map; the share
  of the swath the map scores is reported as ``coverage``), a pixel is predicted a landslide when
  its probability is at or above the map's threshold (the bundle's, recorded in the map's
  ``LANDSLIDE_THRESHOLD`` tag): precision, recall, F1 and IoU of the landslide class (scikit-learn).
- **Objects**: a true landslide (a truth.gpkg polygon) is found when a predicted polygon
  (maps/scene.gpkg) overlaps it, i.e. their intersection has an area; a predicted polygon is right
  when it overlaps a true one. ``recall`` = found / n_true, ``precision`` = right / n_pred.
  ``by_size``: the same per size class of the polygon's own area (true polygons for recall,
  predicted ones for precision), each with its counts. ``matched_iou``: for each found landslide,
  the IoU of its outline with the union of the predicted polygons that overlap it (1 when the
  boundary is traced exactly), averaged over the found landslides.
- **Before the rules**: ``untuned`` scores the same probability map at the fixed threshold
  ``FIXED_THRESHOLD`` (0.5) with no mapping rules, as the maps were before the bundle's rules
  (chosen on validation data), so the rules' effect is read off one file.
- **Uncertainty** (band 2 of the map, where present): its mean over the valid pixels, and over the
  pixels the map gets right and wrong at its threshold (a useful uncertainty is higher where the
  map is wrong).
- **Figure** (plots/map/scene.png): the scene in true colour, the truth outlined on it (found
  landslides green, missed red), the probability map, its uncertainty, and the predicted polygons
  over the truth.
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
from landslide_dvc.formats.scene_folder import SCENE_FILE, Truth, read_truth

THRESHOLD_TAG = "LANDSLIDE_THRESHOLD"
FIXED_THRESHOLD = 0.5  # the untuned default the rules are compared with
SIZE_CLASSES_M2 = ((0.0, 100.0), (100.0, 1000.0), (1000.0, float("inf")))  # < 100, 100-1,000, > 1,000 m2


def size_class_name(low: float, high: float) -> str:
    return f"under_{high:g}m2" if low == 0 else (f"over_{low:g}m2" if high == float("inf") else f"{low:g}_{high:g}m2")


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


def share(hits: np.ndarray) -> float:
    return round(float(hits.mean()), 6) if len(hits) else 0.0


def matched_iou(true_polygons: Sequence[Any], predicted_polygons: Sequence[Any], found: np.ndarray) -> float:
    """Mean IoU of each found landslide with the union of the predicted polygons that overlap it."""
    from shapely import STRtree, union_all

    if not found.any():
        return 0.0
    tree = STRtree(list(predicted_polygons))
    ious = []
    for index in np.flatnonzero(found):
        truth = true_polygons[index]
        near = [predicted_polygons[k] for k in tree.query(truth, predicate="intersects")]
        predicted = union_all(near)
        ious.append(truth.intersection(predicted).area / truth.union(predicted).area)
    return round(float(np.mean(ious)), 6)


def object_scores(true_polygons: Sequence[Any], predicted_polygons: Sequence[Any]) -> dict[str, Any]:
    """Object recall (true landslides found) and precision (predicted polygons right), with the counts,
    per size class, and the matched landslides' boundary IoU."""
    found = overlapping(true_polygons, predicted_polygons)
    right = overlapping(predicted_polygons, true_polygons)
    true_areas = np.array([p.area for p in true_polygons])
    predicted_areas = np.array([p.area for p in predicted_polygons])
    by_size = {}
    for low, high in SIZE_CLASSES_M2:
        in_true = (true_areas >= low) & (true_areas < high) if len(true_areas) else np.zeros(0, bool)
        in_predicted = (predicted_areas >= low) & (predicted_areas < high) if len(predicted_areas) else np.zeros(0, bool)
        by_size[size_class_name(low, high)] = {
            "recall": share(found[in_true]), "precision": share(right[in_predicted]),
            "n_true": int(in_true.sum()), "n_found": int(found[in_true].sum()),
            "n_pred": int(in_predicted.sum()), "n_right": int(right[in_predicted].sum()),
        }
    return {
        "recall": share(found), "precision": share(right),
        "n_true": len(true_polygons), "n_pred": len(predicted_polygons),
        "n_found": int(found.sum()), "n_right": int(right.sum()),
        "matched_iou": matched_iou(true_polygons, predicted_polygons, found),
        "by_size": by_size,
    }


def uncertainty_scores(uncertainty: np.ndarray, probability: np.ndarray, truth: Truth, threshold: float) -> dict[str, Any]:
    """Mean uncertainty over the valid pixels, and over those the map gets right and wrong."""
    valid = truth.valid & np.isfinite(probability) & np.isfinite(uncertainty)
    wrong = (probability[valid] >= threshold) != (truth.mask[valid] == 1)
    values = uncertainty[valid].astype(np.float64)
    return {
        "mean": round(float(values.mean()), 6),
        "mean_where_right": round(float(values[~wrong].mean()), 6) if (~wrong).any() else 0.0,
        "mean_where_wrong": round(float(values[wrong].mean()), 6) if wrong.any() else 0.0,
        "n_wrong": int(wrong.sum()),
    }


def untuned_scores(probability: np.ndarray, georef: Georef, truth: Truth) -> dict[str, Any]:
    """Pixel and object scores at ``FIXED_THRESHOLD`` without mapping rules: the map before its rules."""
    from landslide_dvc.serve.maps import find_regions

    polygons = find_regions(probability, FIXED_THRESHOLD, georef).geometries
    objects = object_scores(truth.polygons, polygons)
    return {
        "threshold": FIXED_THRESHOLD, "pixel": pixel_scores(probability, truth, FIXED_THRESHOLD),
        "objects": {k: objects[k] for k in ("recall", "precision", "n_true", "n_pred", "n_found", "n_right")},
    }


def read_probability_map(path: Path) -> tuple[np.ndarray, np.ndarray | None, Georef, float]:
    """A map `predict` wrote: probability (H, W) float32 with NaN where unscored, its uncertainty (band 2;
    None in a map without one), its grid and threshold."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            probability = src.read(1, masked=True).astype(np.float32).filled(np.nan)
            uncertainty = src.read(2, masked=True).astype(np.float32).filled(np.nan) if src.count >= 2 else None
            georef, tags = Georef(src.crs, src.transform), src.tags()
    except RasterioIOError:
        raise DataError(f"{path} not found or not a GeoTIFF; run map_scene first") from None
    if THRESHOLD_TAG not in tags:
        raise DataError(f"{path} has no {THRESHOLD_TAG} tag; it was not written by `landslide-dvc predict`, rerun map_scene")
    return probability, uncertainty, georef, float(tags[THRESHOLD_TAG])


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
    path: Path, rgb: np.ndarray, truth: Truth, maps: tuple[np.ndarray, np.ndarray | None], predicted: Sequence[Any],
    metrics: dict[str, Any], title: str,
) -> None:
    """Five panels: scene, truth outlines (found green, missed red), probability, uncertainty, predicted polygons."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probability, uncertainty = maps
    found = overlapping(truth.polygons, predicted)
    fig, axes = plt.subplots(1, 5, figsize=(25, 5.6), constrained_layout=True)
    axes[0].imshow(rgb)
    axes[0].set_title("scene (true colour; grey: no data)")
    axes[1].imshow(rgb)
    _draw_polygons(axes[1], [p for p, hit in zip(truth.polygons, found) if hit], truth.georef, "lime")
    _draw_polygons(axes[1], [p for p, hit in zip(truth.polygons, found) if not hit], truth.georef, "red")
    sizes = "; ".join(
        f"{name.replace('_', ' ')}: {c['n_found']}/{c['n_true']}" for name, c in metrics["objects"]["by_size"].items()
    )
    axes[1].set_title(f"known landslides: found (green) {int(found.sum())}, missed (red) {int((~found).sum())}\n{sizes}")
    shown = axes[2].imshow(np.ma.masked_invalid(probability), vmin=0.0, vmax=1.0, cmap="magma")
    axes[2].set_facecolor("0.6")
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.02, label="landslide probability")
    axes[2].set_title("probability (grey: not scored)")
    if uncertainty is not None:
        spread = axes[3].imshow(np.ma.masked_invalid(uncertainty), vmin=0.0, vmax=0.5, cmap="viridis")
        fig.colorbar(spread, ax=axes[3], fraction=0.046, pad=0.02, label="standard deviation of the votes")
        u = metrics["uncertainty"]
        axes[3].set_title(f"uncertainty: mean {u['mean']:.3f}; where right {u['mean_where_right']:.3f}, wrong {u['mean_where_wrong']:.3f}")
    else:
        axes[3].set_title("no uncertainty band in this map")
    axes[3].set_facecolor("0.6")
    axes[4].imshow(rgb)
    _draw_polygons(axes[4], truth.polygons, truth.georef, "red")
    _draw_polygons(axes[4], predicted, truth.georef, "cyan")
    pixel, objects = metrics["pixel"], metrics["objects"]
    axes[4].set_title(
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
    probability, uncertainty, georef, threshold = read_probability_map(map_path)
    truth = read_truth(scene_dir)
    check_same_grid(probability, georef, truth, map_path, scene_dir)
    predicted, _, _ = read_features(polygons_path, ["area_m2", "mean_prob", "max_prob"])
    metrics: dict[str, Any] = {
        "threshold": threshold,
        "pixel": pixel_scores(probability, truth, threshold),
        "objects": object_scores(truth.polygons, predicted),
        "untuned": untuned_scores(probability, georef, truth),
        **({"uncertainty": uncertainty_scores(uncertainty, probability, truth, threshold)} if uncertainty is not None else {}),
        "scene": {"height_px": int(probability.shape[0]), "width_px": int(probability.shape[1]),
                  "valid_km2": round(float(truth.valid.sum() * abs(georef.transform.a * georef.transform.e)) / 1e6, 4)},
    }
    rgb = scene_rgb(scene_dir / SCENE_FILE)
    out_figure.parent.mkdir(parents=True, exist_ok=True)
    out_metrics.parent.mkdir(parents=True, exist_ok=True)
    with atomic_paths(out_metrics, out_figure) as (tmp_metrics, tmp_figure):
        tmp_metrics.write_text(json.dumps(metrics, indent=2) + "\n")
        plot_scene_map(tmp_figure, rgb, truth, (probability, uncertainty), predicted, metrics, title)
    return metrics
