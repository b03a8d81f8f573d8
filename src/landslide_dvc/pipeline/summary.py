"""The `summary` stage: metrics/summary.json, the few figures a reader compares across experiments.

`dvc exp show` and `dvc metrics show` list every key of every metrics file; the detailed files
(per fold, per head, per size class) stay where they are, and this one holds the headline under
the same names in both pipelines:

- ``cv_f1``, ``test_f1``: the submitted head's out-of-fold and test F1 (Zindi; `submit.head`);
- ``val_pixel_f1``: the U-Net's pixel F1 on its validation split (Landslide4Sense);
- ``map_pixel_f1``, ``map_obj_recall``, ``map_obj_precision``: the scored scene map (`score_map`),
  with the thresholds and rules the map was made with.

The Landslide4Sense pipeline's file nests its figures under ``l4s`` (``--section``), so that
`dvc exp show`, which reads both pipelines, names each column once and briefly (``map_pixel_f1``
and ``l4s.map_pixel_f1``) instead of prefixing both with their file paths.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.io import atomic_paths


def read_metrics(path: Path, producer: str) -> dict[str, Any]:
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path} not found; run `dvc repro {producer}` first") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); rerun `dvc repro -f {producer}`") from None
    if not isinstance(metrics, dict):
        raise DataError(f"{path} must hold a JSON object; rerun `dvc repro -f {producer}`")
    return metrics


def figure(metrics: dict[str, Any], key: str, path: Path, producer: str) -> float:
    """``metrics[a][b]...`` for the dotted ``key``, as a float; a missing key names the file."""
    value: Any = metrics
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise DataError(f"{path} has no '{key}'; rerun `dvc repro -f {producer}`")
        value = value[part]
    return round(float(value), 4)  # four digits: what the tables print, and a 100-column `dvc exp show`


def headline(*, head_metrics: Path | None, seg_metrics: Path | None, map_metrics: Path) -> dict[str, float]:
    """The summary's figures from the detailed metrics files (see the module docstring)."""
    summary: dict[str, float] = {}
    if head_metrics is not None:
        heads = read_metrics(head_metrics, "fit_head")
        summary["cv_f1"] = figure(heads, "cv.f1", head_metrics, "fit_head")
        if "test" in heads:  # the real Zindi test set has no answers
            summary["test_f1"] = figure(heads, "test.f1", head_metrics, "fit_head")
    if seg_metrics is not None:
        summary["val_pixel_f1"] = figure(read_metrics(seg_metrics, "train_seg"), "pixel_f1", seg_metrics, "train_seg")
    scored = read_metrics(map_metrics, "score_map")
    summary["map_pixel_f1"] = figure(scored, "pixel.f1", map_metrics, "score_map")
    summary["map_obj_recall"] = figure(scored, "objects.recall", map_metrics, "score_map")
    summary["map_obj_precision"] = figure(scored, "objects.precision", map_metrics, "score_map")
    return summary


def run_summary(
    *, head_metrics: Path | None, seg_metrics: Path | None, map_metrics: Path, out: Path, section: str | None = None
) -> dict[str, float]:
    """The stage: read the detailed files, write metrics/summary.json whole (under ``section``, if given)."""
    summary = headline(head_metrics=head_metrics, seg_metrics=seg_metrics, map_metrics=map_metrics)
    with atomic_paths(out) as (tmp,):
        tmp.write_text(json.dumps({section: summary} if section else summary, indent=2) + "\n")
    return summary
