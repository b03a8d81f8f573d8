"""The model bundle (`export` stage -> models/bundle/): everything `landslide-dvc predict` needs, pickle-free.

The layout of the files is `landslide_dvc.core.bundle_files`'s.

The heads are refitted here from the same embeddings with the same code as `fit_head`
(`landslide_dvc.pipeline.fit_head.fit_model`), and the export refuses to write a bundle unless the refitted heads,
saved and loaded back, give the test scores `fit_head` wrote bit for bit. Loading verifies every
sha256 first, then reads weights with safetensors, the SVM with skops and an explicit trusted-type
list (nothing outside it is instantiated), and LightGBM from text: no file goes through pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from landslide_dvc.core.bands import PATCH_SIZE, RAW_BANDS
from landslide_dvc.core.bundle_files import (
    BUNDLE_FORMAT,
    CHANNEL_RECIPE,
    CLASSIFIER,
    MANIFEST,
    package_version,
    save_weights,
)
from landslide_dvc.core.checkpoint import load_checkpoint
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.heads import Head, head_file, head_scores, load_head, save_head
from landslide_dvc.core.io import atomic_path, file_sha256
from landslide_dvc.pipeline.fit_head import HeadParams, fit_model
from landslide_dvc.pipeline.h5data import load_parts, load_split, open_h5

# ----------------------------------------------------------------------------------------------
# Writing


def read_fit_head_scores(predictions_path: Path, head: Head, n_folds: int) -> tuple[float, np.ndarray]:
    """The threshold and per-fold test scores (N, K) that `fit_head@head` wrote."""
    with open_h5(predictions_path, f"fit_head@{head}") as h5:
        if str(h5.attrs["head"]) != head:
            raise DataError(f"{predictions_path} holds the {h5.attrs['head']} head, not {head}; rerun `dvc repro`")
        threshold = float(h5.attrs["threshold"])
        fold_scores = h5["test/fold_scores"][()]
    if fold_scores.ndim != 2 or fold_scores.shape[1] != n_folds:
        raise DataError(f"{predictions_path} has test scores of {fold_scores.shape[1]} folds, not {n_folds}; rerun `dvc repro`")
    return threshold, fold_scores


def run_export(
    head: Head,
    head_params: HeadParams,
    tta: int,
    *,
    train_path: Path,
    model_paths: list[Path],
    embedding_paths: list[Path],
    predictions_path: Path,
    out_dir: Path,
) -> dict[str, Any]:
    """The stage: assemble models/bundle/ (atomically) and return its manifest."""
    train = load_split(train_path, with_images=False)
    n_folds = len(model_paths)
    threshold, fit_head_scores = read_fit_head_scores(predictions_path, head, n_folds)
    with atomic_path(out_dir, directory=True) as tmp:
        (tmp / "folds").mkdir()
        (tmp / "heads").mkdir()
        folds, network = [], None
        for fold, (model_path, embedding_path) in enumerate(zip(model_paths, embedding_paths)):
            checkpoint = load_checkpoint(model_path)
            meta = checkpoint["meta"]
            if list(meta["channels"]) != train.channels or int(meta["fold"]) != fold:
                raise DataError(f"{model_path} is not fold {fold}'s model for train.h5's channels; rerun `dvc repro`")
            this_network = {k: meta[k] for k in ("backbone", "in_chans", "dim")} | {"drop_rate": float(meta.get("drop_rate", 0.0))}
            if network is not None and this_network != network:
                raise DataError(f"{model_path} has another network than fold 0's; rerun `dvc repro`")
            network = this_network
            weights = f"folds/fold_{fold}.safetensors"
            save_weights(checkpoint["state_dict"], tmp / weights)
            entry = {"fold": fold, "weights": weights}
            if (name := head_file(head, fold)) is not None:
                parts = load_parts(embedding_path)
                test = parts["test"]
                save_head(head, fit_model(head, head_params, parts["train"]), tmp / name)
                reloaded = head_scores(head, load_head(head, tmp / name), test.features, test.prob)
                if not np.array_equal(reloaded, fit_head_scores[:, fold]):
                    raise DataError(
                        f"the {head} head refitted for fold {fold} and saved does not reproduce {predictions_path} "
                        f"exactly; rerun `dvc repro -f fit_head@{head} export`"
                    )
                entry["head"] = name
            folds.append(entry)
        assert network is not None
        manifest = {
            "format": BUNDLE_FORMAT,
            "kind": CLASSIFIER,
            "package": "landslide-dvc",
            "package_version": package_version(),
            "backbone": network["backbone"],
            "drop_rate": network["drop_rate"],
            "input_size": int(network["dim"]),
            "patch_size": PATCH_SIZE,
            "bands": list(RAW_BANDS),
            "channels": train.channels,
            "n_channels": len(train.channels),
            "channel_recipe": CHANNEL_RECIPE,
            "optical_scale": float(train.attrs["optical_scale"]),
            "normalization": {
                "method": str(train.attrs["method"]),
                "center": [float(v) for v in train.attrs["center"]],
                "scale": [float(v) for v in train.attrs["scale"]],
            },
            "n_folds": n_folds,
            "folds": folds,
            "head": head,
            "threshold": threshold,
            "tta": tta,
            "files": {
                str(p.relative_to(tmp)): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()
            },
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# ----------------------------------------------------------------------------------------------
# Reading


