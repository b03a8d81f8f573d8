"""Per-channel scaling: statistics fitted on the training images, applied to any images.

`normalize` fits and applies them to the pipeline's splits; the model bundle stores them and
`landslide-dvc predict` applies them to new patches, so both go through the same arithmetic."""

from __future__ import annotations

from typing import Literal

import numpy as np

NormMethod = Literal["standard", "robust"]


def fit_statistics(images: np.ndarray, method: NormMethod) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (center, scale) over all pixels of ``images`` (N, C, H, W), float64.

    standard: mean and standard deviation; robust: median and inter-quartile range.
    A constant channel gets scale 1 so it maps to 0 instead of dividing by zero.
    """
    n_channels = images.shape[1]
    center = np.empty(n_channels)
    scale = np.empty(n_channels)
    for c in range(n_channels):
        values = images[:, c].reshape(-1)
        if method == "standard":
            center[c] = values.mean(dtype=np.float64)
            scale[c] = values.std(dtype=np.float64)
        elif method == "robust":
            q25, q50, q75 = np.percentile(values, [25, 50, 75])
            center[c], scale[c] = q50, q75 - q25
        else:  # pragma: no cover - params validation rejects it first
            raise ValueError(method)
    scale[~(scale > 1e-12)] = 1.0
    return center, scale


def apply_statistics(images: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """(x - center) / scale per channel, in place on a float32 array; returns it."""
    images -= center.astype(np.float32)[None, :, None, None]
    images /= scale.astype(np.float32)[None, :, None, None]
    return images
