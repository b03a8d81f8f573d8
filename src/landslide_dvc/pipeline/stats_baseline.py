"""The `stats_baseline` stage: the simple reference of the public leaderboard, gradient boosting on
per-band statistics of each patch (public solutions: F1 about 0.86-0.88; the paper: 0.894).

Features of a patch, per channel: mean, standard deviation, minimum, maximum and the percentiles
in stats_baseline.percentiles. The channels are the 12 raw bands in physical units (optical
reflectance, SAR dB) and, with stats_baseline.indices, the 8 derived channels of the 20-channel
set (NDVI, EVI2, VARI, REDR, VH-VV ratios, pre-event VV). They are read from the normalised
train.h5/test.h5 with the per-channel scaling undone (its centre and scale are stored there), so
the indices see reflectance whatever normalize.channels and normalize.method are.

LightGBM (the `lgbm` head's fixed deterministic settings, seeded) is fitted per fold on train.h5's
own fold column, the folds of the network and its heads, on the original images only (no SMOTE).
Out-of-fold scores cover every training image once; test scores are averaged over the folds; the
metrics have the layout of metrics/heads/*.json (landslide_dvc.pipeline.fit_head.head_metrics).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np

from landslide_dvc.core.bands import RAW_BANDS
from landslide_dvc.core.channels import INDEX_CHANNELS, index_channels
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.heads import check_lgbm_params
from landslide_dvc.core.io import atomic_paths
from landslide_dvc.core.metrics import read_answers
from landslide_dvc.core.params import params_section, require
from landslide_dvc.pipeline.crossval import CrossValResult, Fold, cross_validate, write_predictions
from landslide_dvc.pipeline.fit_head import fit_predict, head_metrics
from landslide_dvc.pipeline.h5data import Part, open_h5, read_strings

NAME = "stats_gbm"
BASE_STATISTICS = ("mean", "std", "min", "max")
_BATCH = 256  # images whose statistics are computed at once (bounded memory on the full dataset)


@params_section
class StatsBaselineParams:
    """`stats_baseline:` section."""

    percentiles: list[float]  # per channel, beside mean, std, min and max
    indices: bool  # also the 8 derived channels (NDVI, EVI2, ...)
    threshold: float | Literal["oof"]  # 0.5, or "oof": F1-optimal on out-of-fold scores
    seed: int
    lgbm: dict[str, Any]  # lightgbm.LGBMClassifier parameters (deterministic settings are fixed)

    def validate(self) -> None:
        for q in self.percentiles:
            require(0 < q < 100, f"stats_baseline.percentiles: {q:g} must be in (0, 100); min and max are always included")
        require(len(set(self.percentiles)) == len(self.percentiles), "stats_baseline.percentiles lists a value twice")
        require(
            self.threshold == "oof" or 0.0 < float(self.threshold) < 1.0,
            f"stats_baseline.threshold={self.threshold} must be in (0, 1) or 'oof'",
        )
        check_lgbm_params(self.lgbm, "stats_baseline")


def feature_names(percentiles: list[float], indices: bool) -> list[str]:
    """``{channel}_{statistic}`` for every feature column, in order."""
    channels = list(RAW_BANDS) + (list(INDEX_CHANNELS) if indices else [])
    statistics = list(BASE_STATISTICS) + [f"p{q:g}" for q in percentiles]
    return [f"{channel}_{statistic}" for channel in channels for statistic in statistics]


def patch_statistics(channels: np.ndarray, percentiles: list[float]) -> np.ndarray:
    """(N, C * (4 + len(percentiles))) statistics of each channel of (N, C, H, W) images."""
    pixels = channels.reshape(channels.shape[0], channels.shape[1], -1)
    parts = [pixels.mean(axis=2, dtype=np.float64), pixels.std(axis=2, dtype=np.float64), pixels.min(axis=2), pixels.max(axis=2)]
    if percentiles:
        parts += list(np.percentile(pixels, percentiles, axis=2))
    # (N, C, S): statistics vary fastest, matching feature_names
    return np.stack([np.asarray(part, np.float32) for part in parts], axis=2).reshape(channels.shape[0], -1)


@dataclass
class Features:
    """One split's patch statistics, with its IDs (and labels/folds for train.h5)."""

    ids: list[str]
    values: np.ndarray  # (N, F) float32
    labels: np.ndarray | None = None
    fold: np.ndarray | None = None


def split_features(path: Path, percentiles: list[float], indices: bool) -> Features:
    """Patch statistics of every image of train.h5 or test.h5, in physical units, batch by batch."""
    n_raw = len(RAW_BANDS)
    with open_h5(path, "normalize") as h5:
        channels = [c.decode() if isinstance(c, bytes) else str(c) for c in np.atleast_1d(h5.attrs["channels"])]
        if channels[:n_raw] != list(RAW_BANDS):
            raise DataError(f"{path} does not start with the 12 raw bands ({', '.join(channels[:n_raw])}); rerun `dvc repro -f normalize`")
        center = np.asarray(h5.attrs["center"], np.float32)[:n_raw, None, None]
        scale = np.asarray(h5.attrs["scale"], np.float32)[:n_raw, None, None]
        ids = read_strings(h5["ids"])
        images = h5["images"]
        batches = []
        for start in range(0, len(ids), _BATCH):
            raw = images[start : start + _BATCH, :n_raw] * scale + center  # undo normalize's scaling
            if not np.isfinite(raw).all():
                raise DataError(f"{path}: images contain NaN/Inf; rerun `dvc repro -f normalize`")
            derived = np.concatenate([raw, index_channels(raw)], axis=1) if indices else raw
            batches.append(patch_statistics(derived, percentiles))
        values = np.concatenate(batches) if batches else np.empty((0, len(feature_names(percentiles, indices))), np.float32)
        labels = h5["labels"][()].astype(np.int8) if "labels" in h5 else None
        fold = h5["fold"][()].astype(np.int8) if "fold" in h5 else None
    return Features(ids, values, labels, fold)


def feature_folds(train: Features, test: Features) -> Iterator[Fold]:
    """train.h5's own folds (the network's and its heads'): fold k holds out the images of fold k."""
    assert train.labels is not None and train.fold is not None
    ids = np.array(train.ids, dtype=object)
    test_part = Part(test.values, np.zeros(len(test.ids)), test.ids, None)
    for fold in range(int(train.fold.max()) + 1):
        val = train.fold == fold
        fit_part = Part(train.values[~val], np.zeros(int((~val).sum())), list(ids[~val]), train.labels[~val])
        val_part = Part(train.values[val], np.zeros(int(val.sum())), list(ids[val]), train.labels[val])
        yield Fold(fit_part, val_part, test_part, source=f"fold {fold} of train.h5")


def fit_folds(params: StatsBaselineParams, train: Features, test: Features) -> CrossValResult:
    """LightGBM per fold of train.h5's fold column: out-of-fold and fold-averaged test scores."""
    fit = partial(fit_predict, "lgbm", params)  # the lgbm head reads lgbm and seed, which this section has
    return cross_validate(feature_folds(train, test), fit, producer="normalize")


def run_stats_baseline(
    params: StatsBaselineParams,
    *,
    train_path: Path,
    test_path: Path,
    answers_path: Path,
    out_predictions: Path,
    out_metrics: Path,
) -> dict[str, Any]:
    """The stage: features, per-fold LightGBM, and predictions + metrics written together."""
    train = split_features(train_path, params.percentiles, params.indices)
    test = split_features(test_path, params.percentiles, params.indices)
    if train.labels is None or train.fold is None:
        raise DataError(f"{train_path} has no labels/fold columns; rerun `dvc repro -f normalize`")
    result = fit_folds(params, train, test)
    answers = read_answers(answers_path, result.test_ids)
    metrics = head_metrics(NAME, params.threshold, result, answers)
    names = feature_names(params.percentiles, params.indices)
    metrics["n_features"] = len(names)
    with atomic_paths(out_predictions, out_metrics) as (tmp_predictions, tmp_metrics):
        write_predictions(tmp_predictions, result, head=NAME, threshold=metrics["threshold"], attrs={"features": names})
        tmp_metrics.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
