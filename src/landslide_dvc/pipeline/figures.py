"""PNG figures written by the stages (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from landslide_dvc.core.bands import band_group, preview_band, rgb_names  # noqa: E402
from landslide_dvc.pipeline.h5data import Split, SyntheticSet  # noqa: E402


def _physical(split: Split, images: np.ndarray, names: list[str]) -> np.ndarray:
    """Undo the normalisation for the named channels: (N, len(names), H, W) in physical units."""
    center = np.asarray(split.attrs["center"])
    scale = np.asarray(split.attrs["scale"])
    index = [split.channels.index(n) for n in names]
    return images[:, index] * scale[index, None, None] + center[index, None, None]


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((values - low) / max(high - low, 1e-12), 0.0, 1.0)


def plot_smote_examples(
    train: Split,
    synthetic: SyntheticSet,
    counts: list[dict[str, object]],
    path: Path,
    n_examples: int = 3,
) -> None:
    """Fig. 4: (a) anchors, the neighbour used, a synthetic sample, as RGB and SAR; (b) class counts."""
    by_id = {sample_id: i for i, sample_id in enumerate(train.ids)}
    rows: list[int] = []
    seen: set[str] = set()
    for j, anchor in enumerate(synthetic.anchor_id):
        if anchor not in seen:
            seen.add(anchor)
            rows.append(j)
        if len(rows) == n_examples:
            break
    fig = plt.figure(figsize=(13, 2.3 * max(len(rows), 1) + 2.6))
    grid = fig.add_gridspec(max(len(rows), 1) + 1, 6, height_ratios=[1.0] * max(len(rows), 1) + [1.1])
    if rows:
        anchors = train.images[[by_id[synthetic.anchor_id[j]] for j in rows]]
        neighbours = train.images[[by_id[synthetic.neighbor_id[j]] for j in rows]]
        samples = synthetic.images[rows]
        stack = np.stack([anchors, neighbours, samples], axis=1)  # (R, 3, C, H, W)
        flat = stack.reshape(-1, *stack.shape[2:])
        preview = preview_band(train.channels)  # Zindi: DDVV, where scars show in SAR; L4S: slope
        rgb_bands = rgb_names(train.channels) or [train.channels[0]] * 3
        rgb = _physical(train, flat, rgb_bands).reshape(len(rows), 3, 3, *flat.shape[-2:])
        sar = _physical(train, flat, [preview]).reshape(len(rows), 3, *flat.shape[-2:])
        rgb_lo, rgb_hi = np.percentile(rgb, [2, 98])
        sar_lo, sar_hi = np.percentile(sar, [2, 98])
        titles = ["anchor", "neighbour", "synthetic"]
        for r, j in enumerate(rows):
            for c in range(3):
                ax = fig.add_subplot(grid[r, c])
                ax.imshow(_stretch(rgb[r, c].transpose(1, 2, 0), rgb_lo, rgb_hi))
                ax.set_title(f"{titles[c]} RGB" + (f" (lam={synthetic.lam[j]:.2f})" if c == 2 else ""), fontsize=8)
                ax.axis("off")
                ax = fig.add_subplot(grid[r, 3 + c])
                ax.imshow(sar[r, c], cmap="gray", vmin=sar_lo, vmax=sar_hi)
                ax.set_title(f"{titles[c]} {preview}", fontsize=8)
                ax.axis("off")
    else:
        ax = fig.add_subplot(grid[0, :])
        ax.text(0.5, 0.5, "no synthetic images (smote.enabled: false)", ha="center", va="center")
        ax.axis("off")
    ax = fig.add_subplot(grid[-1, :])
    labels = [str(row["group"]) for row in counts]
    values = [int(row["images"]) for row in counts]  # type: ignore[call-overload]
    ax.barh(labels, values, color=["tab:blue", "tab:orange", "tab:red"][: len(values)])
    for y, v in enumerate(values):
        ax.text(v, y, f" {v}", va="center", fontsize=8)
    ax.set_xlabel("training images (fold 0)")
    ax.invert_yaxis()
    fig.suptitle("SSIM-SMOTE: (a) anchors, neighbours and synthetic samples; (b) class counts", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)


def plot_decision_map(
    coords: np.ndarray,
    labels: np.ndarray | None,
    predicted: np.ndarray,
    region_model: object | None,
    title: str,
    path: Path,
) -> None:
    """Fig. 6: 2-D embedding coloured by label over the decision regions of a head."""
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    pad = 0.05 * (coords.max(axis=0) - coords.min(axis=0) + 1e-9)
    lo, hi = coords.min(axis=0) - pad, coords.max(axis=0) + pad
    if region_model is not None:
        gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
        zone = region_model.predict(np.c_[gx.ravel(), gy.ravel()]).reshape(gx.shape)  # type: ignore[attr-defined]
        ax.contourf(gx, gy, zone, levels=[-0.5, 0.5, 1.5], colors=["#dbe9f6", "#fbd9d3"], alpha=0.9)
        ax.contour(gx, gy, zone, levels=[0.5], colors="k", linewidths=0.8)
    colour_by = labels if labels is not None else predicted
    legend = "label" if labels is not None else "predicted"
    for value, colour, name in ((0, "tab:blue", "no landslide"), (1, "tab:red", "landslide")):
        mask = colour_by == value
        ax.scatter(coords[mask, 0], coords[mask, 1], s=9, c=colour, label=f"{name} ({legend})", linewidths=0)
    if labels is not None:
        wrong = labels != predicted
        ax.scatter(coords[wrong, 0], coords[wrong, 1], s=28, facecolors="none", edgecolors="k", linewidths=0.6,
                   label="misclassified by the head")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)


def plot_band_importance(rows: list[dict[str, float | str]], path: Path) -> None:
    """Fig. 7: accumulated probability drop per occluded band."""
    names = [str(r["band"]) for r in rows]
    values = [float(r["drop_sum"]) for r in rows]
    palette = {"optical": "tab:green", "sar": "tab:purple", "terrain": "tab:brown", "derived": "tab:gray"}
    colours = [palette[band_group(name)] for name in names]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.42 * len(rows)), 3.8))
    ax.bar(range(len(rows)), values, color=colours)
    ax.set_xticks(range(len(rows)), names, rotation=60 if len(rows) > 12 else 0, fontsize=8)
    ax.set_ylabel("accumulated drop of P(landslide)")
    has_terrain = any(band_group(name) == "terrain" for name in names)  # Landslide4Sense: no SAR, slope and DEM
    legend = "optical: green, terrain: brown, derived: grey" if has_terrain else "optical: green, SAR: purple, derived: grey"
    ax.set_title(f"Band occlusion importance ({legend})", fontsize=9)
    ax.axhline(0, color="k", linewidth=0.6)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)
