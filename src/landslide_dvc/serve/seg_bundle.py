"""A segmentation bundle loaded for prediction: the Landslide4Sense U-Net as a `SceneModel`.

`landslide_dvc.serve.bundle.load_bundle` verifies the sha256s and hands a manifest of kind
``segmentation`` here. The U-Net is rebuilt from the manifest's architecture record and its
weights read with safetensors (nothing unpickled).

For the scene path (`landslide_dvc.serve.predict`) the bundle gives:
- ``window_inputs``: a strip preprocessed as `normalize` preprocessed the training patches (the
  channel set by `core.l4s_channels.derive_l4s_channels`, then `core.scaling.apply_statistics`
  with the manifest's statistics), once per strip (every channel is computed pixel by pixel), and
  the windows cut from it;
- ``predict_tiles``: per-pixel probabilities, the sigmoid of the U-Net's logit as
  `core.segmentation.predict_probabilities` computes it. With ``tta`` 4 or 8 the dihedral views of
  a batch (`core.inference.dihedral_views`) go through the U-Net in one forward pass; each view's
  output is turned back to the window's orientation and the views are averaged per pixel
  (`core.inference.view_mean`);
- ``check_scale``: the release stores its bands rescaled (means near 0, standard deviations near
  1); a window at Sentinel-2 digital numbers, or a scene in reflectance, is refused in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from landslide_dvc.core.bands import L4S_OPTICAL_BANDS
from landslide_dvc.core.bundle_files import MANIFEST, SEGMENTATION, ManifestFields, export_command, load_weights
from landslide_dvc.core.devices import autocast, prepare_model, to_memory_format
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.inference import TTA_VIEWS, dihedral_views, view_mean
from landslide_dvc.core.l4s_channels import L4S_CHANNEL_SETS, derive_l4s_channels, l4s_channel_names
from landslide_dvc.core.scaling import apply_statistics
from landslide_dvc.core.seg_bundle_files import UNetArchitecture
from landslide_dvc.serve.strips import Tiles, vote_spread

# The typical optical pixel of a window of the release lies within a few training standard
# deviations of the training means (the stand-in's brightest windows: about 1); Sentinel-2 digital
# numbers (about 100 to 10,000) lie hundreds to thousands away. The median distance, unlike the
# extremes, is not moved by a bright cloud or a dark shadow.
MAX_MEDIAN_SIGMAS = 50.0
# Reflectance (0 to about 1.5) lies near the release's means, so only its shape gives it away:
# next to no negative values, where the release's bands, centred near 0, are mostly negative in
# most scenes (74-99 % of the stand-in's optical values in every strip), and a spread that is a
# fraction of the training's (0.06-0.25 of the training standard deviation on the stand-in's
# bands turned back into reflectance, 0.5-2.2 in the release's scale). Judged on a scene's first
# scored strip as a whole: one bright, even window (a cloud) may look so on its own.
MAX_NEGATIVE_SHARE = 0.01  # share of optical values below -0.05 (reflectance noise stays above)
MAX_REFLECTANCE = 2.0  # 99th percentile of the optical values
MAX_REFLECTANCE_SPREAD = 0.35  # median over the optical bands of their standard deviation / the training's
RESCALE_FIX = (
    "the segmentation bundle takes the Landslide4Sense release's rescaled bands (means near 0, standard deviations "
    "near 1): rescale each band as the release does before predicting"
)
# Windows per forward pass; with 8 TTA views a pass holds 32 128-px images. On 2 CPU cores a U-Net pass of
# 32 images ran 1.6-2.2x faster per image than one of 256 (activations that fit the caches): bench/predict_scene.py.
# On a GPU, raise it (--batch-size, map_scene.batch_size).
DEFAULT_BATCH_SIZE = 4
SCALE_CHECK_STEP = 4  # the per-window scale check reads every 4th pixel each way


def undo_dihedral_views(per_view: torch.Tensor, n_views: int) -> torch.Tensor:
    """Outputs (V * n, H, W) of `dihedral_views`' views, stacked view-major, each turned back to the input's orientation.

    4 views (identity, horizontal flip, vertical flip, 180-degree rotation) are their own
    inverses; view ``4 a + k`` of 8 is the input rotated k quarter turns after a horizontal flip
    when ``a`` is 1, undone by rotating back, then flipping.
    """
    if n_views == 1:
        return per_view
    views = per_view.contiguous().reshape(n_views, -1, *per_view.shape[1:])  # channels-last outputs: strided, slow to turn
    if n_views == 4:
        undone = [views[0], torch.flip(views[1], dims=(-1,)), torch.flip(views[2], dims=(-2,)), torch.rot90(views[3], 2, dims=(-2, -1))]
    else:
        undone = []
        for index, view in enumerate(views):
            flipped, quarter_turns = divmod(index, 4)
            view = torch.rot90(view, -quarter_turns, dims=(-2, -1))
            undone.append(torch.flip(view, dims=(-1,)) if flipped else view)
    return torch.stack(undone).reshape(per_view.shape)


def optical_sigmas(raw: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Per window (n,): the median of |x - training mean| / training std over its optical pixels.

    Every 4th pixel each way (1/16 of them) gives the median: the check runs on every window, and a
    scale that is off by a factor of hundreds shows in any thousand pixels.
    """
    n_optical = len(L4S_OPTICAL_BANDS)
    optical = raw[:, :n_optical, ::SCALE_CHECK_STEP, ::SCALE_CHECK_STEP].astype(np.float64)
    distance = np.abs(optical - center[None, :n_optical, None, None]) / scale[None, :n_optical, None, None]
    return np.median(distance.reshape(len(raw), -1), axis=1)


def reflectance_signs(raw: np.ndarray, scale: np.ndarray) -> tuple[float, float, float]:
    """Of raw windows (n, 14, w, w) together: the share of optical values below -0.05, their 99th
    percentile, and the median over the optical bands of their standard deviation / the training's."""
    n_optical = len(L4S_OPTICAL_BANDS)
    per_band = raw[:, :n_optical].astype(np.float64).transpose(1, 0, 2, 3).reshape(n_optical, -1)
    spread = float(np.median(per_band.std(axis=1) / scale[:n_optical]))
    return float((per_band < -0.05).mean()), float(np.percentile(per_band, 99)), spread


@dataclass
class SegBundle(ManifestFields):
    """A loaded segmentation bundle: the U-Net, its preprocessing statistics, window, threshold and TTA views."""

    path: Path
    manifest: dict[str, Any]
    network: nn.Module

    kind = SEGMENTATION
    default_batch_size = DEFAULT_BATCH_SIZE

    @property
    def window(self) -> int:
        """The side of the patches the U-Net was trained on; scene windows have it."""
        return int(self.manifest["window"])

    @property
    def center(self) -> np.ndarray:
        return np.asarray(self.manifest["normalization"]["center"], np.float64)

    @property
    def scale(self) -> np.ndarray:
        return np.asarray(self.manifest["normalization"]["scale"], np.float64)

    def to(self, device: torch.device) -> SegBundle:
        self.network = prepare_model(self.network, device)
        return self

    def preprocess(self, raw: np.ndarray) -> np.ndarray:
        """Raw bands (N, 14, H, W) -> U-Net input (N, C, H, W) float32, with `normalize`'s own functions (``raw`` is not changed)."""
        channels = derive_l4s_channels(np.array(raw, dtype=np.float32), int(self.manifest["n_channels"]))  # type: ignore[arg-type]
        return apply_statistics(channels, self.center, self.scale)

    def window_inputs(self, strip: np.ndarray, cols: Sequence[int]) -> np.ndarray:
        """U-Net inputs (n, C, w, w) of the windows of a raw strip (14, w, width) starting at ``cols``.

        Every channel is computed pixel by pixel, so the strip is preprocessed once and the windows
        are cut from it: the same float32 operations on the same values as window by window.
        """
        w = self.window
        with np.errstate(all="ignore"):  # no-data pixels are preprocessed too, and never used
            prepared = self.preprocess(strip[None])[0]
        return np.stack([prepared[:, :, c : c + w] for c in cols])

    @torch.no_grad()
    def predict_tiles(self, inputs: np.ndarray, device: torch.device, batch_size: int) -> Tiles:
        """Per-pixel landslide probabilities (n, w, w) float32 of preprocessed windows, averaged over the TTA views,
        and per pixel the standard deviation of the views' probabilities (the votes)."""
        tta = self.tta
        self.network.eval()
        out = np.empty((len(inputs), *inputs.shape[-2:]), np.float32)
        spread = np.zeros_like(out)
        for start in range(0, len(inputs), batch_size):
            x = torch.from_numpy(inputs[start : start + batch_size]).to(device, non_blocking=True)
            n = len(x)
            if tta > 1:
                x = torch.cat(dihedral_views(x, tta))  # view-major (tta * n, C, w, w): one forward pass
            with autocast(device):
                logits = self.network(to_memory_format(x, device))
            prob = torch.sigmoid(logits.float())[:, 0]
            undone = undo_dihedral_views(prob, tta)
            out[start : start + n] = view_mean(undone, tta).cpu().numpy()
            if tta > 1:
                spread[start : start + n] = vote_spread(undone.reshape(tta, n, *undone.shape[1:]).cpu().numpy(), axis=0)
        return Tiles(out, spread)

    def check_scale(self, raw: np.ndarray, names: Sequence[str], source: str, *, whole: bool) -> None:
        """Refuse, in one line, raw windows (n, 14, w, w) that are not at the release's scale.

        Every window: optical values hundreds of training standard deviations from the training
        means (Sentinel-2 digital numbers, or another unscaled unit). ``whole`` (a scene's first
        scored strip): windows that together look like reflectance.
        """
        if not len(raw):
            return
        sigmas = optical_sigmas(raw, self.center, self.scale)
        if (sigmas > MAX_MEDIAN_SIGMAS).any():
            k = int(np.argmax(sigmas > MAX_MEDIAN_SIGMAS))
            median = float(np.median(raw[k, : len(L4S_OPTICAL_BANDS)]))
            looks = "Sentinel-2 digital numbers" if 30.0 <= median <= 30000.0 else "another unit"
            raise DataError(
                f"{source}: {names[k]} looks like {looks}, not the Landslide4Sense release's scale (median {median:.4g} "
                f"of its optical bands, {sigmas[k]:.0f} training standard deviations from the training means); {RESCALE_FIX}"
            )
        if whole:
            negative, top, spread = reflectance_signs(raw, self.scale)
            if negative < MAX_NEGATIVE_SHARE and top <= MAX_REFLECTANCE and spread < MAX_REFLECTANCE_SPREAD:
                raise DataError(
                    f"{source}: the optical bands from {names[0]} on look like reflectance, not the Landslide4Sense "
                    f"release's scale ({negative:.1%} below -0.05, 99th percentile {top:.3g}, spread {spread:.2f} of the "
                    f"training standard deviations); {RESCALE_FIX}"
                )


def load_seg_bundle(path: Path, manifest: dict[str, Any]) -> SegBundle:
    """The U-Net of a segmentation bundle whose files `load_bundle` has verified, on the CPU (``SegBundle.to`` moves it)."""
    fix = export_command(manifest)
    source = path / MANIFEST
    try:
        n_channels = int(manifest["n_channels"])
        if n_channels not in L4S_CHANNEL_SETS or list(manifest["channels"]) != l4s_channel_names(n_channels):  # type: ignore[arg-type]
            raise DataError(f"{source} has channels {manifest['channels']}, not a Landslide4Sense channel set; re-export with {fix}")
        norm = manifest["normalization"]
        if len(norm["center"]) != n_channels or len(norm["scale"]) != n_channels or len(manifest["bands"]) != len(l4s_channel_names(14)):
            raise DataError(f"{source} has statistics or bands that do not fit its {n_channels} channels; re-export with {fix}")
        if manifest["tta"] not in TTA_VIEWS or not 0.0 < float(manifest["threshold"]) < 1.0 or int(manifest["window"]) < 8:
            raise DataError(f"{source} has tta {manifest['tta']} / threshold {manifest['threshold']} / window {manifest['window']}; re-export with {fix}")
        architecture = UNetArchitecture.from_record(manifest["architecture"], source)
        if architecture.in_chans != n_channels:
            raise DataError(f"{source} records a U-Net on {architecture.in_chans} channels for {n_channels}; re-export with {fix}")
        network = architecture.build()
        weights = path / manifest["weights"]
        try:
            network.load_state_dict(load_weights(weights, fix))
        except RuntimeError:
            raise DataError(f"{weights} does not fit the U-Net {source} describes; re-export with {fix}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{source} lacks or garbles {exc}; re-export the bundle with {fix}") from None
    return SegBundle(path=path, manifest=manifest, network=network.eval())
