"""Scene prediction throughput: `landslide-dvc predict` on a synthetic 12-band GeoTIFF against the bare forward pass.

    python bench/predict_scene.py [--bundle models/bundle] [--size 4096] [--stride 32] [--device auto]
                                  [--batch-size 256] [--figure docs/predict_map.png] [--workdir DIR]

The scene is a mosaic of the synthetic stand-in's test patches (landslide_dvc.formats.synthetic: Sentinel-2
digital numbers and Sentinel-1 dB, the archive's own scales) on a 10 m UTM grid, with a no-data
corner (nodata value and NaN) that must stay unscored. It is scored with the bundle exactly as
`landslide-dvc predict SCENE.tif` does (strip reading, no-data masking, the bundle's preprocessing,
fold networks + heads, per-pixel averaging, GeoTIFF + GeoJSON writing). The baseline sends the
same windows, already preprocessed, through each fold network with `landslide_dvc.core.inference.predict`
(the forward path of `extract_embeddings`, features included, same TTA and batch size). Last
line: `ratio: X` = predict time / bare forward time (goal <= 1.2). ``--figure`` writes a PNG of
the scene's RGB with the predicted probability over it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from landslide_dvc.core.bands import BAND_INDEX, N_RAW_BANDS, PATCH_SIZE
from landslide_dvc.core.devices import select_device
from landslide_dvc.core.inference import predict
from landslide_dvc.formats.synthetic import SynthesizeParams, generate_split
from landslide_dvc.serve.bundle import Bundle, load_bundle
from landslide_dvc.serve.predict import open_scene, score_scene, strip_windows, window_offsets, write_scene_outputs

PIXEL_M = 10.0  # Sentinel-2 10 m bands
NODATA = -9999.0


def synthetic_scene(size: int, seed: int) -> np.ndarray:
    """(12, size, size) float32: a mosaic of synthetic test patches, with a no-data top-left corner.

    Generated one row of tiles at a time, so the scene is the only full-size array in memory.
    """
    tiles = -(-size // PATCH_SIZE)
    params = SynthesizeParams(
        n_train=1, n_test=tiles, seed=seed, train_prior=0.176, test_prior=0.11, cloud_fraction=0.5,
        hard_negative_fraction=0.5, region_shift=1.0, duplicate_test_id=False,
    )
    scene = np.empty((N_RAW_BANDS, size, size), np.float32)
    for row, rng in enumerate(np.random.default_rng(seed).spawn(tiles)):
        images, _ = generate_split(tiles, params.test_prior, "test", rng, params)  # (tiles, 64, 64, 12)
        strip = images.transpose(3, 1, 0, 2).reshape(N_RAW_BANDS, PATCH_SIZE, tiles * PATCH_SIZE)
        top = row * PATCH_SIZE
        scene[:, top : top + PATCH_SIZE] = strip[:, : size - top, :size]
    corner = size // 8  # outside the swath: nodata value, and a NaN strip along its edge
    rows, cols = np.ogrid[:size, :size]
    scene[:, rows + cols < corner] = NODATA
    scene[:, (rows + cols >= corner) & (rows + cols < corner + 2)] = np.nan
    return scene


def write_geotiff(path: Path, scene: np.ndarray) -> None:
    import rasterio
    from rasterio.transform import from_origin

    profile = {
        "driver": "GTiff", "width": scene.shape[2], "height": scene.shape[1], "count": N_RAW_BANDS,
        "dtype": "float32", "crs": "EPSG:32645", "transform": from_origin(300000.0, 3100000.0, PIXEL_M, PIXEL_M),
        "nodata": NODATA, "tiled": True, "blockxsize": 256, "blockysize": 256,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(scene)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare_forward_seconds(bundle: Bundle, scene_path: Path, stride: int, device: torch.device, batch_size: int) -> tuple[float, int]:
    """Seconds of the fold networks' forward passes (extract_embeddings' path) on the windows predict scores."""
    tta, dim = int(bundle.manifest["tta"]), int(bundle.manifest["input_size"])
    seconds, n = 0.0, 0
    with open_scene(scene_path) as src:
        cols = window_offsets(src.width, stride)
        pending: list[np.ndarray] = []
        rows = window_offsets(src.height, stride)
        for k, r in enumerate(rows):
            found, _ = strip_windows(src, r, cols)
            if len(found):
                pending.append(found)
            if pending and (sum(map(len, pending)) >= 2048 or k == len(rows) - 1):
                images = torch.from_numpy(bundle.preprocess(np.concatenate(pending)))  # not timed
                pending.clear()
                synchronize(device)
                start = time.perf_counter()
                for network in bundle.networks:
                    predict(network, images, dim, device, batch_size, with_features=True, tta=tta)
                synchronize(device)
                seconds += time.perf_counter() - start
                n += len(images)
    return seconds, n


def save_figure(path: Path, scene: np.ndarray, probability: np.ndarray, threshold: float, step: int) -> None:
    """The scene's RGB (2-98 % stretch) with the probability map over it, and the threshold's contour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb = scene[[BAND_INDEX["Red"], BAND_INDEX["Green"], BAND_INDEX["Blue"]], ::step, ::step].transpose(1, 2, 0)
    valid = np.isfinite(rgb).all(axis=2) & (rgb != NODATA).all(axis=2)
    low, high = np.percentile(rgb[valid], [2, 98])
    shown = np.clip((rgb - low) / (high - low), 0, 1)
    shown[~valid] = 1.0
    prob = probability[::step, ::step]
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.2), constrained_layout=True)
    axes[0].imshow(shown)
    axes[0].set_title("synthetic scene (RGB; white: no data)")
    axes[1].imshow(shown)
    overlay = axes[1].imshow(np.ma.masked_invalid(prob), cmap="inferno", vmin=0, vmax=1, alpha=0.6)
    axes[1].contour(np.nan_to_num(prob, nan=0.0) >= threshold, levels=[0.5], colors="cyan", linewidths=0.8)
    axes[1].set_title(f"landslide probability (cyan: >= threshold {threshold:.2f})")
    for ax in axes:
        ax.set_axis_off()
    fig.colorbar(overlay, ax=axes[1], shrink=0.8, label="probability")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("models/bundle"))
    parser.add_argument("--size", type=int, default=4096, help="scene width and height in pixels")
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path, help="write a PNG of the predicted map here (e.g. docs/predict_map.png)")
    parser.add_argument("--workdir", type=Path, help="keep the scene and outputs here (default: a temporary folder)")
    args = parser.parse_args()

    device = select_device(args.device, "--device")
    bundle = load_bundle(args.bundle).to(device)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        scene = synthetic_scene(args.size, args.seed)
        scene_path = work / "scene.tif"
        write_geotiff(scene_path, scene)
        print(f"scene: {args.size} x {args.size} px, 12 bands, written in {time.perf_counter() - start:.1f} s")

        synchronize(device)
        start = time.perf_counter()
        with open_scene(scene_path) as src:
            result = score_scene(src, bundle, args.stride, device, args.batch_size, str(scene_path))
            write_scene_outputs(src, result, bundle.threshold, work / "map.tif", work / "map.geojson")
        synchronize(device)
        predict_s = time.perf_counter() - start
        forward_s, n_forward = bare_forward_seconds(bundle, scene_path, args.stride, device, args.batch_size)
        if args.figure:
            save_figure(args.figure, scene, result.probability, bundle.threshold, max(1, args.size // 1024))
            print(f"figure: {args.figure}")

    n = len(result.windows)
    assert n == n_forward, "the baseline must see the windows predict scored"
    km2 = args.size * args.size * PIXEL_M**2 / 1e6
    print(f"bundle: {bundle.manifest['n_folds']} x {bundle.manifest['backbone']} + {bundle.head}, tta {bundle.manifest['tta']}, device {device}")
    print(f"windows: {n} scored of {result.n_windows} (stride {args.stride}; the rest touch no-data)")
    print(f"predict: {predict_s:.2f} s, {n / predict_s:.1f} patches/s, {predict_s / km2:.4f} s/km^2 at {PIXEL_M:g} m pixels ({km2:.0f} km^2)")
    print(f"bare forward: {forward_s:.2f} s, {n / forward_s:.1f} patches/s")
    print(f"ratio: {predict_s / forward_s:.3f}")


if __name__ == "__main__":
    main()
