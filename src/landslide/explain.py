"""The `explain` stage: UMAP of the embeddings with the heads' decision regions (paper Fig. 6)
and band-occlusion importance (Fig. 7).

UMAP: one fold model's embeddings (its validation fold, or the test set) are projected to 2-D
and coloured by label. Like the paper, a small RBF SVM fitted in the 2-D map to each head's
predicted labels draws that head's decision regions: the FC head's and the SVM head's.

Occlusion: every landslide image is scored by the model of the fold that did not train on it;
each input band is zeroed in turn (zero = the training mean after normalisation) and the drop of
the predicted landslide probability is accumulated per band.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from landslide.checkpoint import load_fold_model
from landslide.embeddings import load_parts
from landslide.errors import DataError, ParamError
from landslide.h5data import Split, open_h5, read_strings
from landslide.io import atomic_paths
from landslide.params import require
from landslide.train import predict, select_device


@dataclass(frozen=True)
class ExplainParams:
    """`explain:` section."""

    split: Literal["val", "test"]  # which embeddings UMAP projects (val has labels on real data)
    fold: int  # whose model's embedding space is shown
    umap_neighbors: int
    umap_min_dist: float
    max_points: int  # subsample for the UMAP figure (0: all)
    occlusion_max_images: int  # landslide images scored per fold for occlusion (0: all)
    batch_size: int
    device: Literal["auto", "cpu", "cuda"]
    seed: int

    def validate(self) -> None:
        require(self.fold >= 0, f"explain.fold={self.fold} must be >= 0")
        require(self.umap_neighbors >= 2, f"explain.umap_neighbors={self.umap_neighbors} must be >= 2")
        require(0.0 <= self.umap_min_dist <= 1.0, f"explain.umap_min_dist={self.umap_min_dist} must be in [0, 1]")
        require(self.max_points >= 0, f"explain.max_points={self.max_points} must be >= 0")
        require(self.occlusion_max_images >= 0, f"explain.occlusion_max_images={self.occlusion_max_images} must be >= 0")
        require(self.batch_size >= 1, f"explain.batch_size={self.batch_size} must be >= 1")


def band_occlusion(
    model: torch.nn.Module, images: np.ndarray, dim: int, device: torch.device, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image probabilities (N,) and their drop (N, C) when each band is zeroed in turn."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    base, _ = predict(model, x, dim, device, batch_size)
    drops = np.empty((len(images), images.shape[1]))
    for c in range(images.shape[1]):
        occluded = x.clone()
        occluded[:, c] = 0.0
        prob, _ = predict(model, occluded, dim, device, batch_size)
        drops[:, c] = base - prob
    return base, drops


def occlusion_importance(
    train: Split, model_paths: list[Path], params: ExplainParams
) -> list[dict[str, float | str]]:
    """Accumulated probability drop per band over all landslide images (each scored out-of-fold)."""
    assert train.labels is not None and train.fold is not None
    device = select_device(params.device)
    rng = np.random.default_rng(params.seed)
    total_drop = np.zeros(train.n_channels)
    total_drop_vs_one = np.zeros(train.n_channels)  # the paper's variant: original assumed to be 1.0
    n_images = 0
    for fold, path in enumerate(model_paths):
        index = np.flatnonzero((train.fold == fold) & (train.labels == 1))
        if params.occlusion_max_images and len(index) > params.occlusion_max_images:
            index = np.sort(rng.choice(index, params.occlusion_max_images, replace=False))
        if len(index) == 0:
            continue
        model, meta = load_fold_model(path)
        base, drops = band_occlusion(model.to(device), train.images[index], int(meta["dim"]), device, params.batch_size)
        total_drop += drops.sum(axis=0)
        total_drop_vs_one += (1.0 - (base[:, None] - drops)).sum(axis=0)
        n_images += len(index)
    if n_images == 0:
        raise DataError("no landslide images to occlude; the training set has no landslides")
    share = total_drop / total_drop.sum() if total_drop.sum() > 0 else np.zeros_like(total_drop)
    return [
        {
            "band": name,
            "drop_sum": float(total_drop[c]),
            "drop_mean": float(total_drop[c] / n_images),
            "drop_vs_one_sum": float(total_drop_vs_one[c]),
            "share": float(share[c]),
            "n_images": n_images,
        }
        for c, name in enumerate(train.channels)
    ]


def _svm_scores(path: Path, ids: list[str], part: str, fold: int) -> tuple[np.ndarray, float]:
    with open_h5(path, "fit_head@svm") as h5:
        threshold = float(h5.attrs["threshold"])
        if part == "val":
            by_id = dict(zip(read_strings(h5["oof/ids"]), h5["oof/score"][()]))
            scores = np.array([by_id[i] for i in ids])
        else:
            scores = h5["test/fold_scores"][()][:, fold]
    return scores, threshold


def umap_figures(
    embeddings_path: Path, svm_path: Path, answers: np.ndarray | None, params: ExplainParams, out_fc: Path, out_svm: Path
) -> dict[str, float]:
    """Fig. 6: the embedding map with the FC head's and the SVM head's decision regions."""
    import umap
    from sklearn.svm import SVC

    from landslide.figures import plot_decision_map

    parts = load_parts(embeddings_path)
    part = parts[params.split]
    labels = part.labels if params.split == "val" else answers
    svm_scores, svm_threshold = _svm_scores(svm_path, part.ids, params.split, params.fold)
    predicted = {"FC head": (part.prob >= 0.5).astype(int), "SVM head": (svm_scores >= svm_threshold).astype(int)}
    rng = np.random.default_rng(params.seed)
    keep = np.arange(len(part.ids))
    if params.max_points and len(keep) > params.max_points:
        keep = np.sort(rng.choice(keep, params.max_points, replace=False))
    features = part.features[keep]
    n_neighbors = min(params.umap_neighbors, len(keep) - 1)
    if n_neighbors < 2:
        raise DataError(f"{embeddings_path}: {len(keep)} points are too few for UMAP; use more data")
    coords = umap.UMAP(
        n_neighbors=n_neighbors, min_dist=params.umap_min_dist, random_state=params.seed, n_jobs=1
    ).fit_transform(features)
    agreement = {}
    for (name, pred), out in zip(predicted.items(), (out_fc, out_svm)):
        pred = pred[keep]
        region = None
        if len(np.unique(pred)) == 2:
            region = SVC(kernel="rbf", C=1.0, gamma="scale").fit(coords, pred)
            agreement[name] = float(np.mean(region.predict(coords) == pred))
        plot_decision_map(
            coords,
            labels[keep] if labels is not None else None,
            pred,
            region,
            f"{name}: {params.split} embeddings of fold {params.fold} (UMAP)",
            out,
        )
    return agreement


def run_explain(
    params: ExplainParams,
    *,
    train: Split,
    model_paths: list[Path],
    embedding_paths: list[Path],
    svm_path: Path,
    answers: np.ndarray | None,
    out_umap_fc: Path,
    out_umap_svm: Path,
    out_occlusion_json: Path,
    out_occlusion_png: Path,
) -> list[dict[str, float | str]]:
    """The stage: both UMAP figures and the occlusion JSON + bar chart, written together."""
    from landslide.figures import plot_band_importance

    if params.fold >= len(model_paths):
        raise ParamError(f"explain.fold={params.fold} is out of range; use 0..{len(model_paths) - 1}")
    if params.split == "test" and answers is None:
        print("explain: the test set has no answers; points are coloured by the heads' predictions")
    importance = occlusion_importance(train, model_paths, params)
    with atomic_paths(out_umap_fc, out_umap_svm, out_occlusion_json, out_occlusion_png) as (fc, svm, oj, op):
        umap_figures(embedding_paths[params.fold], svm_path, answers, params, fc, svm)
        oj.write_text(json.dumps(importance, indent=2) + "\n")
        plot_band_importance(importance, op)
    return importance
