"""The `explain` stage: UMAP of the embeddings with decision regions (paper Fig. 6) and
band-occlusion importance (Fig. 7).

UMAP: one fold model's embedding map (fitted on its training images); its validation fold or the
test set is shown coloured by label, over (a) the FC head's decision regions and (b) the regions
of an RBF SVM fitted in the map, the paper's illustration. The stage reads no head outputs, so
changing head.* (Table 3) does not rerun it.

Occlusion: every landslide image is scored by the model of the fold that did not train on it;
each input band is zeroed in turn (zero = the training mean after normalisation) and the drop of
the predicted landslide probability is accumulated per band.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from landslide_dvc.core.checkpoint import load_fold_model
from landslide_dvc.core.devices import Device, prepare_model, select_device
from landslide_dvc.core.errors import DataError, ParamError
from landslide_dvc.core.inference import predict
from landslide_dvc.core.io import atomic_paths
from landslide_dvc.core.params import params_section, require
from landslide_dvc.core.runtime import use_threads
from landslide_dvc.pipeline.h5data import Split, load_parts


@params_section
class ExplainParams:
    """`explain:` section."""

    split: Literal["val", "test"]  # which embeddings UMAP projects (val has labels on real data)
    fold: int  # whose model's embedding space is shown
    umap_neighbors: int
    umap_min_dist: float
    max_points: int  # training points the UMAP map is fitted on (0: all)
    svm_C: float  # C of the RBF SVM drawn in the 2-D map (Fig. 6b)
    occlusion_max_images: int  # landslide images scored per fold for occlusion (0: all)
    batch_size: int
    device: Device
    seed: int
    threads: int = 2  # CPU intra-op threads (results depend on it); 0: torch's default

    def validate(self) -> None:
        require(self.fold >= 0, f"explain.fold={self.fold} must be >= 0")
        require(self.umap_neighbors >= 2, f"explain.umap_neighbors={self.umap_neighbors} must be >= 2")
        require(0.0 <= self.umap_min_dist <= 1.0, f"explain.umap_min_dist={self.umap_min_dist} must be in [0, 1]")
        require(self.max_points >= 0, f"explain.max_points={self.max_points} must be >= 0")
        require(self.svm_C > 0, f"explain.svm_C={self.svm_C} must be > 0")
        require(self.occlusion_max_images >= 0, f"explain.occlusion_max_images={self.occlusion_max_images} must be >= 0")
        require(self.batch_size >= 1, f"explain.batch_size={self.batch_size} must be >= 1")
        require(self.threads >= 0, f"explain.threads={self.threads} must be >= 0 (0: torch's default)")


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
    device = select_device(params.device, "explain.device")
    use_threads(params.threads)
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
        base, drops = band_occlusion(prepare_model(model, device), train.images[index], int(meta["dim"]), device, params.batch_size)
        total_drop += drops.sum(axis=0)
        total_drop_vs_one += (1.0 - (base[:, None] - drops)).sum(axis=0)
        n_images += len(index)
    if n_images == 0:
        raise DataError("no landslide images to occlude; the training set has no landslides")
    # Signed share of the total absolute effect: zeroing a band can also raise P(landslide).
    magnitude = np.abs(total_drop).sum()
    share = total_drop / magnitude if magnitude > 0 else np.zeros_like(total_drop)
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


def umap_figures(
    embeddings_path: Path, answers: np.ndarray | None, params: ExplainParams, out_fc: Path, out_svm: Path
) -> dict[str, float]:
    """Fig. 6: fold ``explain.fold``'s embedding map with two kinds of decision regions.

    UMAP is fitted on the fold's original training embeddings; the shown points (validation
    fold or test set) are projected with the same map. (a) the FC head: a 2-D RBF SVM trained to
    reproduce the FC head's decisions on the training points draws its regions; (b) like the
    paper, an RBF SVM (C = explain.svm_C) fitted on the map's training points and their labels.
    """
    import umap
    from sklearn.svm import SVC

    from landslide_dvc.core.metrics import f1
    from landslide_dvc.pipeline.figures import plot_decision_map

    parts = load_parts(embeddings_path)
    train, shown = parts["train"], parts[params.split]
    assert train.labels is not None
    original = ~train.synthetic if train.synthetic is not None else np.ones(len(train.ids), bool)
    rng = np.random.default_rng(params.seed)
    fit_index = np.flatnonzero(original)
    if params.max_points and len(fit_index) > params.max_points:
        fit_index = np.sort(rng.choice(fit_index, params.max_points, replace=False))
    n_neighbors = min(params.umap_neighbors, len(fit_index) - 1)
    if n_neighbors < 2 or len(np.unique(train.labels[fit_index])) < 2:
        raise DataError(f"{embeddings_path}: too few training points ({len(fit_index)}) for the UMAP map; use more data")
    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=params.umap_min_dist, random_state=params.seed, n_jobs=1)
    train_xy = reducer.fit_transform(train.features[fit_index])
    shown_xy = reducer.transform(shown.features)
    shown_fc = (shown.prob >= 0.5).astype(int)
    labels = shown.labels if params.split == "val" else answers
    scores = {}

    fc_train = (train.prob[fit_index] >= 0.5).astype(int)
    region = SVC(kernel="rbf", C=10.0, gamma="scale").fit(train_xy, fc_train) if len(np.unique(fc_train)) == 2 else None
    title = f"FC head: {params.split} embeddings of fold {params.fold} (UMAP)"
    if labels is not None:
        scores["fc_f1"] = f1(labels, shown_fc)
        title += f", F1 {scores['fc_f1']:.3f}"
    plot_decision_map(shown_xy, labels, shown_fc, region, title, out_fc)

    svm = SVC(kernel="rbf", C=params.svm_C, gamma="scale").fit(train_xy, train.labels[fit_index])
    shown_svm = svm.predict(shown_xy).astype(int)
    title = f"RBF SVM on the 2-D map (C={params.svm_C:g}): {params.split} of fold {params.fold}"
    if labels is not None:
        scores["map_svm_f1"] = f1(labels, shown_svm)
        title += f", F1 {scores['map_svm_f1']:.3f}"
    plot_decision_map(shown_xy, labels, shown_svm, svm, title, out_svm)
    return scores


def run_explain(
    params: ExplainParams,
    *,
    train: Split,
    model_paths: list[Path],
    embeddings_path: Path,
    answers: np.ndarray | None,
    out_umap_fc: Path,
    out_umap_svm: Path,
    out_occlusion_json: Path,
    out_occlusion_png: Path,
) -> list[dict[str, float | str]]:
    """The stage: both UMAP figures and the occlusion JSON + bar chart, written together."""
    from landslide_dvc.pipeline.figures import plot_band_importance

    if params.fold >= len(model_paths):
        raise ParamError(f"explain.fold={params.fold} is out of range; use 0..{len(model_paths) - 1}")
    if params.split == "test" and answers is None:
        print("explain: the test set has no answers; points are coloured by the heads' predictions")
    importance = occlusion_importance(train, model_paths, params)
    with atomic_paths(out_umap_fc, out_umap_svm, out_occlusion_json, out_occlusion_png) as (fc, svm, oj, op):
        umap_figures(embeddings_path, answers, params, fc, svm)
        oj.write_text(json.dumps(importance, indent=2) + "\n")
        plot_band_importance(importance, op)
    return importance
