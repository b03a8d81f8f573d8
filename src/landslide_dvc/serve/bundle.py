"""A model bundle loaded for prediction: every file checked against its sha256, nothing unpickled.

Loading verifies every sha256 first, then reads weights with safetensors, the svm head with skops
and an explicit trusted-type list, and LightGBM from text (`landslide_dvc.core.heads`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from landslide_dvc.core.bundle import MANIFEST, load_weights, read_manifest, verify_files
from landslide_dvc.core.channels import ChannelSet, raw_to_channels
from landslide_dvc.core.devices import prepare_model
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.heads import Head, head_scores, load_head
from landslide_dvc.core.inference import TTA_VIEWS, predict
from landslide_dvc.core.model import ModelParams, create_model
from landslide_dvc.core.scaling import apply_statistics


@dataclass
class Bundle:
    """A loaded bundle: preprocessing statistics, fold networks and heads."""

    path: Path
    manifest: dict[str, Any]
    networks: list[nn.Module]
    heads: list[Any]  # None per fold for the fc head

    @property
    def head(self) -> Head:
        return self.manifest["head"]

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"])

    @property
    def optical_scale(self) -> float:
        return float(self.manifest["optical_scale"])

    def preprocess(self, raw: np.ndarray) -> np.ndarray:
        """Raw patches (N, 12, 64, 64) as stored -> network input, with `normalize`'s own functions."""
        norm = self.manifest["normalization"]
        channels: ChannelSet = self.manifest["n_channels"]
        return apply_statistics(
            raw_to_channels(raw, channels, self.optical_scale), np.asarray(norm["center"]), np.asarray(norm["scale"])
        )

    def to(self, device: torch.device) -> Bundle:
        self.networks = [prepare_model(net, device) for net in self.networks]
        return self

    def score(self, raw: np.ndarray, device: torch.device, batch_size: int, *, progress: str | None = None) -> np.ndarray:
        """Landslide scores (N,) of raw patches: each fold's network (+ head), averaged over folds."""
        images = torch.from_numpy(self.preprocess(raw))
        tta, dim = int(self.manifest["tta"]), int(self.manifest["input_size"])
        per_fold = []
        for network, head_model in zip(self.networks, self.heads):
            prob, features = predict(
                network, images, dim, device, batch_size, with_features=self.head != "fc", tta=tta, progress=progress
            )
            per_fold.append(head_scores(self.head, head_model, features, prob))
        return np.stack(per_fold, axis=1).mean(axis=1)  # as fit_head averages its folds


def load_bundle(path: str | Path) -> Bundle:
    """Verify and load a bundle on the CPU (``Bundle.to`` moves it)."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        verify_files(path, manifest)
        if manifest["tta"] not in TTA_VIEWS or manifest["head"] not in ("fc", "svm", "lgbm"):
            raise DataError(f"{path / MANIFEST} has tta {manifest['tta']} / head {manifest['head']}; re-export the bundle")
        params = ModelParams(
            backbone=str(manifest["backbone"]), pretrained=False, checkpoint=None,
            dim=int(manifest["input_size"]), drop_rate=float(manifest["drop_rate"]),
        )
        networks, heads = [], []
        for entry in manifest["folds"]:
            network = create_model(params, in_chans=int(manifest["n_channels"]))
            try:
                network.load_state_dict(load_weights(path / entry["weights"]))
            except RuntimeError:
                raise DataError(f"{path / entry['weights']} does not fit {params.backbone}; re-export the bundle") from None
            networks.append(network.eval())
            heads.append(load_head(manifest["head"], path / entry["head"]) if "head" in entry else None)
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path / MANIFEST} lacks or garbles {exc}; re-export the bundle with `dvc repro export`") from None
    return Bundle(path=path, manifest=manifest, networks=networks, heads=heads)


class FoldEmbeddings(Protocol):
    """One fold's embeddings of some images (the pipeline's ``h5data.Part`` is one)."""

    features: np.ndarray  # (N, D) float32
    prob: np.ndarray  # (N,) FC-head landslide probability


def bundle_parts_scores(bundle: Bundle, parts: Sequence[FoldEmbeddings]) -> np.ndarray:
    """The bundle's heads on embeddings already computed, one part per fold, averaged over folds."""
    return np.stack(
        [head_scores(bundle.head, model, part.features, part.prob) for model, part in zip(bundle.heads, parts)], axis=1
    ).mean(axis=1)
