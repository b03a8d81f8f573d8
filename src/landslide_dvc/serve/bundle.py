"""A model bundle loaded for prediction: every file checked against its sha256, nothing unpickled.

Loading verifies every sha256 first, then reads weights with safetensors, the scikit-learn heads with
skops and an explicit trusted-type list, and LightGBM from text (`landslide_dvc.core.heads`).

Scoring (`Bundle.score_inputs`) builds the test-time-augmentation views of a batch once and sends
them, stacked along the batch axis, through every fold's network in one forward pass each: the
same tensors and the same operations as `landslide_dvc.core.inference.predict` applied fold by
fold, so the scores are bit for bit those of the pipeline's own path (tests/test_predict_scene.py
checks it), without building the views once per fold.

For scenes a bundle is a `SceneModel` (`landslide_dvc.serve.predict`): its bands and window size,
``window_inputs`` (a strip's windows preprocessed, once per strip where every channel is computed
pixel by pixel) and ``predict_tiles`` (per-pixel probability tiles; the classifier fills each
window with its score).

`load_bundle` loads either kind of bundle (``kind`` in the manifest; none means a classifier, as
bundles exported before the segmentation kind): this module's classifier `Bundle`, or the U-Net's
`landslide_dvc.serve.seg_bundle.SegBundle`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from landslide_dvc.core.bands import OPTICAL_BANDS
from landslide_dvc.core.bundle_files import (
    CLASSIFIER,
    MANIFEST,
    SEGMENTATION,
    ManifestFields,
    bundle_kind,
    load_weights,
    read_manifest,
    verify_files,
)
from landslide_dvc.core.channels import (
    OPTICAL_SCALES,
    REFLECTANCE_P99_RANGE,
    ChannelSet,
    check_optical_scale,
    raw_to_channels,
)
from landslide_dvc.core.devices import autocast, prepare_model, to_memory_format
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.heads import HEADS, Head, head_scores, load_head
from landslide_dvc.core.inference import TTA_VIEWS, dihedral_views, view_mean
from landslide_dvc.core.model import ModelParams, create_model, embed, resize_input
from landslide_dvc.core.scaling import apply_statistics
from landslide_dvc.serve.seg_bundle import SegBundle, load_seg_bundle
from landslide_dvc.serve.strips import Tiles, vote_spread

PIXELWISE_CHANNEL_SETS = (12, 20)  # every channel computed from its own pixel (28 adds per-image edge maps)
SCALE_NAMES = {1.0: "reflectance", 10000.0: "Sentinel-2 digital numbers (reflectance x 10,000)"}


@dataclass
class Bundle(ManifestFields):
    """A loaded bundle: preprocessing statistics, fold networks and heads."""

    path: Path
    manifest: dict[str, Any]
    networks: list[nn.Module]
    heads: list[Any]  # None per fold for the fc head

    kind = CLASSIFIER
    default_batch_size = 256  # patches per forward pass; with TTA a pass holds that many times the views

    @property
    def head(self) -> Head:
        return self.manifest["head"]

    @property
    def optical_scale(self) -> float:
        return float(self.manifest["optical_scale"])

    @property
    def window(self) -> int:
        """The side of the square patches the networks were trained on (scene windows have it)."""
        return int(self.manifest["patch_size"])

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

    def score(self, raw: np.ndarray, device: torch.device, batch_size: int) -> np.ndarray:
        """Landslide scores (N,) of raw patches: each fold's network (+ head), averaged over folds."""
        return self.score_inputs(torch.from_numpy(self.preprocess(raw)), device, batch_size)

    def score_inputs(self, images: torch.Tensor, device: torch.device, batch_size: int) -> np.ndarray:
        """Scores (N,) of preprocessed patches; the TTA views of each batch are built once for all folds.

        Per fold, the probabilities and features are `core.inference.predict`'s (same batches, same
        views, same operations, same view mean), then its head; the folds are averaged as in fit_head.
        """
        return self.score_with_votes(images, device, batch_size, with_votes=False)[0]

    @torch.no_grad()
    def score_with_votes(
        self, images: torch.Tensor, device: torch.device, batch_size: int, *, with_votes: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores (N,) as `score_inputs`, and the votes (N, folds x views) behind them: each fold's head on
        each TTA view's own features (fc: each view's probability), whose spread is the map's uncertainty."""
        tta, dim, with_features = int(self.manifest["tta"]), int(self.manifest["input_size"]), self.head != "fc"
        probs: list[list[torch.Tensor]] = [[] for _ in self.networks]
        feats: list[list[torch.Tensor]] = [[] for _ in self.networks]
        view_probs: list[list[torch.Tensor]] = [[] for _ in self.networks]
        view_feats: list[list[torch.Tensor]] = [[] for _ in self.networks]
        for network in self.networks:
            network.eval()
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device, non_blocking=True)
            if tta > 1:
                x = torch.cat(dihedral_views(x, tta))  # view-major: (tta * n, C, H, W), one forward pass per fold
            with autocast(device):
                x = resize_input(to_memory_format(x, device), dim)
                for k, network in enumerate(self.networks):
                    features, logits = embed(network, x)
                    per_view = torch.softmax(logits.float(), dim=1)[:, 1]
                    probs[k].append(view_mean(per_view, tta).cpu())
                    if with_features:
                        feats[k].append(view_mean(features.float(), tta).cpu())
                    if with_votes:
                        view_probs[k].append(per_view.reshape(tta, -1).T.cpu())  # (n, views)
                        if with_features:
                            view_feats[k].append(features.float().reshape(tta, -1, features.shape[-1]).transpose(0, 1).cpu())
        if not len(images):
            return np.empty(0), (np.empty((0, len(self.networks) * tta)) if with_votes else None)
        per_fold = [
            head_scores(
                self.head, head_model, torch.cat(feats[k]).numpy() if with_features else None,
                torch.cat(probs[k]).numpy().astype(np.float64),
            )
            for k, head_model in enumerate(self.heads)
        ]
        scores = np.stack(per_fold, axis=1).mean(axis=1)  # as fit_head averages its folds
        if not with_votes:
            return scores, None
        votes = []
        for k, head_model in enumerate(self.heads):
            fold_probs = torch.cat(view_probs[k]).numpy().astype(np.float64)  # (N, views)
            fold_feats = torch.cat(view_feats[k]).numpy() if with_features else None  # (N, views, D)
            flat = fold_feats.reshape(-1, fold_feats.shape[-1]) if fold_feats is not None else None
            votes.append(np.asarray(head_scores(self.head, head_model, flat, fold_probs.reshape(-1)), np.float64).reshape(len(images), tta))
        return scores, np.concatenate(votes, axis=1)

    def window_inputs(self, strip: np.ndarray, cols: Sequence[int]) -> np.ndarray:
        """Network inputs (n, C, w, w) of the windows of a raw strip (bands, w, width) starting at ``cols``.

        With a pixel-by-pixel channel set the strip is preprocessed once and the windows are cut
        from it (the same float32 operations on the same values as preprocessing each window).
        """
        w = self.window
        if int(self.manifest["n_channels"]) in PIXELWISE_CHANNEL_SETS:
            with np.errstate(all="ignore"):  # no-data pixels are preprocessed too, and never used
                prepared = self.preprocess(strip[None])[0]
            return np.stack([prepared[:, :, c : c + w] for c in cols])
        return self.preprocess(np.stack([strip[:, :, c : c + w] for c in cols]))

    def predict_tiles(self, inputs: np.ndarray, device: torch.device, batch_size: int) -> Tiles:
        """Per-pixel probabilities (n, w, w) of preprocessed windows: each window filled with its score, and
        with the spread of its votes (folds x TTA views)."""
        scores, votes = self.score_with_votes(torch.from_numpy(inputs), device, batch_size)
        shape = (len(scores), self.window, self.window)
        spread = vote_spread(votes, axis=1)
        return Tiles(np.broadcast_to(scores[:, None, None], shape), np.broadcast_to(spread[:, None, None], shape))

    def check_scale(self, raw: np.ndarray, names: Sequence[str], source: str, *, whole: bool) -> None:
        """Refuse raw patches at another optical scale than the bundle's, in one line.

        ``whole``: first the batch's 99th percentile as a whole (the data at another scale
        altogether); then every patch on its own (one patch at another scale among the rest).
        """
        if whole:
            check_optical_scale(raw, self.optical_scale, f"{source} (the bundle's optical_scale)")
        bad = scale_misfits(raw, self.optical_scale)
        if bad.any():
            k = int(np.argmax(bad))
            p99, fits = float(patch_p99(raw[k : k + 1])[0]), fitting_scales(patch_p99(raw[k : k + 1]))[0]
            raise DataError(
                f"{source}: {names[k]} looks like {SCALE_NAMES.get(fits, f'optical_scale {fits:g}')} (99th percentile "
                f"{p99:.4g} of its optical bands), not the bundle's optical_scale {self.optical_scale:g}; multiply "
                f"its optical bands by {self.optical_scale / fits:g}"
            )


def patch_p99(raw: np.ndarray) -> np.ndarray:
    """The 99th percentile of each patch's optical bands (N,) of raw patches (N, bands, H, W)."""
    optical = raw[:, : len(OPTICAL_BANDS)].reshape(len(raw), -1)
    return np.percentile(optical, 99, axis=1)


def fitting_scales(p99: np.ndarray) -> list[float | None]:
    """Per patch, the one known optical scale its 99th percentile fits (None: none or both)."""
    low, high = REFLECTANCE_P99_RANGE
    fits = np.stack([(low <= p99 / s) & (p99 / s <= high) for s in OPTICAL_SCALES], axis=1)
    return [OPTICAL_SCALES[int(np.argmax(f))] if f.sum() == 1 else None for f in fits]


def scale_misfits(raw: np.ndarray, optical_scale: float) -> np.ndarray:
    """(N,) bool: patches whose optical values fit another known scale and not ``optical_scale``.

    A dark patch (water, shadow) fits no scale and passes; a reflectance patch among digital
    numbers (or the reverse) fits exactly the other one.
    """
    if not len(raw):
        return np.zeros(0, bool)
    return np.array([f is not None and f != optical_scale for f in fitting_scales(patch_p99(raw))])


def load_bundle(path: str | Path) -> Bundle | SegBundle:
    """Verify and load a bundle of either kind on the CPU (``.to(device)`` moves it)."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        verify_files(path, manifest)
        if bundle_kind(path, manifest) == SEGMENTATION:
            return load_seg_bundle(path, manifest)
        if manifest["tta"] not in TTA_VIEWS or manifest["head"] not in HEADS:
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
