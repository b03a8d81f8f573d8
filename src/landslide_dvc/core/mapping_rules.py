"""The rules landslide inventories apply to a probability map, and choosing them on validation data.

A pixel is a landslide when its probability is at or above the threshold, its terrain is not flat
(slope at or above ``min_slope``, where the scene has a slope band), and the 4-connected region it
belongs to covers at least ``min_area_m2`` (the minimum mapping unit). Holes inside a region smaller
than ``fill_holes_m2`` are filled first, so a scar with a few low pixels inside counts as one
landslide, as a mapper would draw it.

``tune_rules`` picks the threshold, minimum mapping unit and slope limit that maximise the object F1
on validation patches with known masks (and, separately, the threshold of the best pixel F1). An
object is found or right as `score_map` counts them: a true region is found when a kept predicted
region shares a pixel with it; a predicted region is right when it shares a pixel with a true one.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from landslide_dvc.core.errors import DataError


@dataclass(frozen=True)
class MappingRules:
    """Threshold, minimum mapping unit (m^2), slope limit (in the slope band's units) and hole filling (m^2)."""

    threshold: float
    min_area_m2: float = 0.0
    min_slope: float | None = None  # None: no slope rule
    fill_holes_m2: float = 0.0

    def record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> MappingRules:
        return cls(**{k: record[k] for k in ("threshold", "min_area_m2", "min_slope", "fill_holes_m2") if k in record})

    def describe(self) -> str:
        slope = "no slope rule" if self.min_slope is None else f"slope >= {self.min_slope:g}"
        return (f"probability >= {self.threshold:g}, {slope}, holes under {self.fill_holes_m2:g} m2 filled, "
                f"regions under {self.min_area_m2:g} m2 dropped")


def _structure(ndim: int) -> np.ndarray:
    """4-connectivity in the last two axes only (a stack of patches never connects across patches)."""
    from scipy import ndimage

    plane = ndimage.generate_binary_structure(2, 1)
    if ndim == 2:
        return plane
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = plane
    return structure


def fill_small_holes(mask: np.ndarray, max_hole_px: float) -> np.ndarray:
    """``mask`` with its enclosed background regions of fewer than ``max_hole_px`` pixels filled."""
    from scipy import ndimage

    if max_hole_px <= 0 or not mask.any():
        return mask
    labels, count = ndimage.label(~mask, structure=_structure(mask.ndim))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    touching = np.zeros(count + 1, bool)  # background connected to a patch's border is not a hole
    for edge in (labels[..., 0, :], labels[..., -1, :], labels[..., :, 0], labels[..., :, -1]):
        touching[np.unique(edge)] = True
    hole = (sizes < max_hole_px) & ~touching
    hole[0] = False
    return mask | hole[labels]


def drop_small_regions(mask: np.ndarray, min_px: float) -> np.ndarray:
    """``mask`` without its 4-connected regions of fewer than ``min_px`` pixels."""
    from scipy import ndimage

    if min_px <= 0 or not mask.any():
        return mask
    labels, count = ndimage.label(mask, structure=_structure(mask.ndim))
    keep = np.bincount(labels.ravel(), minlength=count + 1) >= min_px
    keep[0] = False
    return keep[labels]


def landslide_mask(
    probability: np.ndarray, rules: MappingRules, pixel_area_m2: float, slope: np.ndarray | None = None
) -> np.ndarray:
    """The landslide pixels (bool, the shape of ``probability``) under ``rules``; NaN is never a landslide."""
    mask = np.nan_to_num(probability, nan=-np.inf) >= rules.threshold
    if rules.min_slope is not None:
        if slope is None:
            raise DataError(f"the slope rule (min_slope {rules.min_slope:g}) needs a slope band; this scene has none")
        mask &= np.nan_to_num(slope, nan=-np.inf) >= rules.min_slope
    mask = fill_small_holes(mask, rules.fill_holes_m2 / pixel_area_m2)
    return drop_small_regions(mask, rules.min_area_m2 / pixel_area_m2)


@dataclass(frozen=True)
class ObjectCounts:
    n_true: int
    n_pred: int
    n_found: int
    n_right: int

    @property
    def f1(self) -> float:
        recall = self.n_found / self.n_true if self.n_true else 0.0
        precision = self.n_right / self.n_pred if self.n_pred else 0.0
        return 2 * recall * precision / (recall + precision) if recall + precision else 0.0


def object_counts_by_min_area(predicted: np.ndarray, truth: np.ndarray, min_px: Sequence[float]) -> list[ObjectCounts]:
    """Object counts of the predicted mask against the true one, for each minimum region size in pixels.

    One labelling serves every minimum size: a region is kept or not as a whole, so the kept regions'
    overlaps with the true ones are those of the unfiltered labelling.
    """
    from scipy import ndimage

    structure = _structure(predicted.ndim)
    pred_labels, n_pred = ndimage.label(predicted, structure=structure)
    true_labels, n_true = ndimage.label(truth, structure=structure)
    sizes = np.bincount(pred_labels.ravel(), minlength=n_pred + 1)
    both = (pred_labels > 0) & (true_labels > 0)
    pairs = np.unique(np.stack([pred_labels[both], true_labels[both]]), axis=1)  # (2, k) overlapping regions
    counts = []
    for minimum in min_px:
        kept = sizes >= minimum
        kept[0] = False
        kept_pairs = pairs[:, kept[pairs[0]]]
        counts.append(ObjectCounts(
            n_true=int(n_true), n_pred=int(kept.sum()),
            n_found=len(np.unique(kept_pairs[1])), n_right=len(np.unique(kept_pairs[0])),
        ))
    return counts


@dataclass(frozen=True)
class RuleGrid:
    """The candidates ``tune_rules`` searches."""

    thresholds: Sequence[float]
    min_areas_m2: Sequence[float]
    slope_quantiles: Sequence[float]  # slope limits at these quantiles of the validation pixels' slope; 0: no rule
    fill_holes_m2: float = 0.0


def tune_rules(
    probability: np.ndarray, truth: np.ndarray, pixel_area_m2: float, grid: RuleGrid, slope: np.ndarray | None = None
) -> dict[str, Any]:
    """The rules of the best object F1 on validation patches (N, H, W), and the threshold of the best pixel F1.

    Ties go to the first candidate in grid order (lower threshold, smaller unit, no or lower slope limit).
    """
    from sklearn.metrics import f1_score

    if probability.shape != truth.shape:
        raise DataError(f"validation probabilities {probability.shape} and masks {truth.shape} differ in shape")
    truth = truth.astype(bool)
    limits: list[float | None] = [None] if slope is None else [
        None if q == 0 else float(np.quantile(slope, q)) for q in grid.slope_quantiles
    ]
    best: tuple[float, MappingRules, ObjectCounts] | None = None
    for threshold, limit in itertools.product(grid.thresholds, limits):
        base = MappingRules(float(threshold), 0.0, limit, grid.fill_holes_m2)
        mask = landslide_mask(probability, base, pixel_area_m2, slope)
        per_area = object_counts_by_min_area(mask, truth, [a / pixel_area_m2 for a in grid.min_areas_m2])
        for area, counts in zip(grid.min_areas_m2, per_area):
            if best is None or counts.f1 > best[0]:
                best = (counts.f1, MappingRules(float(threshold), float(area), limit, grid.fill_holes_m2), counts)
    pixel_f1 = [f1_score(truth.ravel(), (probability >= t).ravel(), zero_division=0) for t in grid.thresholds]
    assert best is not None
    f1, rules, counts = best
    return {
        "object": {**rules.record(), "f1": round(f1, 6), "n_true": counts.n_true, "n_pred": counts.n_pred,
                   "n_found": counts.n_found, "n_right": counts.n_right},
        "pixel": {"threshold": float(grid.thresholds[int(np.argmax(pixel_f1))]), "f1": round(float(max(pixel_f1)), 6)},
    }


__all__ = [
    "MappingRules", "ObjectCounts", "RuleGrid", "drop_small_regions", "fill_small_holes", "landslide_mask",
    "object_counts_by_min_area", "tune_rules",
]
