"""Scene prediction throughput: `landslide-dvc predict` on a synthetic 12-band GeoTIFF against the bare forward pass.

    python bench/predict_scene.py [--bundle models/bundle] [--size 4096] [--stride 32] [--device auto]
                                  [--batch-size 256] [--repeats 1] [--figure docs/predict_map.png] [--workdir DIR]

The scene is a mosaic of the synthetic stand-in's test patches (landslide_dvc.formats.synthetic: Sentinel-2
digital numbers and Sentinel-1 dB, the archive's own scales) on a 10 m UTM grid, with a no-data
corner (nodata value and NaN) that must stay unscored. It is scored with the bundle exactly as
`landslide-dvc predict SCENE.tif` does (strip reading, no-data masking, per-window scale check,
the bundle's preprocessing once per strip, batched TTA views through the fold networks + heads,
edge-tapered blending, COG + GeoPackage writing). Two baselines get the same windows, already
preprocessed and in the same batches:
  bare forward     each fold network through `landslide_dvc.core.inference.predict` (the forward
                   path of `extract_embeddings`: views built per fold, features, same TTA and batch size)
  networks alone   the fold networks' forward passes on view batches built beforehand (a floor)
One batch and one tiny map go through first (warm-up); ``--repeats`` keeps each path's fastest
time. The seam lines compare the map with a plain mean of the same tiles: the largest jump between
neighbouring pixels across window edges and inside windows, over the pixels every grid window
covering them was scored. Last line: `ratio: X` = predict time / bare forward time (goal <= 1.2).
``--figure`` writes a PNG of the scene's RGB, the plain mean and the blended map.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from landslide_dvc.core.bands import BAND_INDEX, N_RAW_BANDS, PATCH_SIZE
from landslide_dvc.core.devices import autocast, select_device, to_memory_format
from landslide_dvc.core.inference import dihedral_views, predict
from landslide_dvc.core.model import embed, resize_input
from landslide_dvc.formats.synthetic import SynthesizeParams, generate_split
from landslide_dvc.serve.blend import Blender, neighbour_jumps, window_boundaries
from landslide_dvc.serve.bundle import Bundle, load_bundle
from landslide_dvc.serve.maps import Georef, write_map_outputs
from landslide_dvc.serve.predict import SceneResult, score_scene, write_scene_outputs
from landslide_dvc.serve.scene import open_scene, strip_windows, window_offsets

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


def bundle_dim(bundle: Bundle) -> int:
    return int(bundle.manifest["input_size"])


def scene_batches(bundle: Bundle, scene_path: Path, stride: int, batch_size: int) -> list[torch.Tensor]:
    """The windows predict scores, preprocessed, in the batches predict forms (not timed)."""
    w = bundle.window
    with open_scene(scene_path, bundle.bands, w) as src:
        cols = window_offsets(src.width, stride, w)
        found = [strip_windows(src, r, cols, w)[0] for r in window_offsets(src.height, stride, w)]
    images = torch.from_numpy(bundle.preprocess(np.concatenate(found)))
    return list(torch.split(images, batch_size))


def bare_forward_seconds(bundle: Bundle, batches: list[torch.Tensor], device: torch.device, batch_size: int) -> float:
    """Seconds of each fold's `core.inference.predict` (extract_embeddings' path: views built per fold, features)."""
    tta, dim = int(bundle.manifest["tta"]), bundle_dim(bundle)
    synchronize(device)
    start = time.perf_counter()
    for images in batches:
        for network in bundle.networks:
            predict(network, images, dim, device, batch_size, with_features=True, tta=tta)
    synchronize(device)
    return time.perf_counter() - start


@torch.no_grad()
def network_seconds(bundle: Bundle, batches: list[torch.Tensor], device: torch.device) -> float:
    """Seconds of the fold networks alone on view batches built beforehand (a floor for any predict)."""
    tta, dim = int(bundle.manifest["tta"]), bundle_dim(bundle)
    views = [resize_input(to_memory_format(torch.cat(dihedral_views(b.to(device), tta)), device), dim) for b in batches]
    synchronize(device)
    start = time.perf_counter()
    for x in views:
        with autocast(device):
            for network in bundle.networks:
                embed(network, x)
    synchronize(device)
    return time.perf_counter() - start


def predict_seconds(bundle: Bundle, scene_path: Path, work: Path, stride: int, device: torch.device, batch_size: int) -> tuple[float, SceneResult, list]:
    """Seconds of `landslide-dvc predict SCENE.tif` (read, check, preprocess, score, blend, COG + polygons)."""
    taps: list = []
    synchronize(device)
    start = time.perf_counter()
    with open_scene(scene_path, bundle.bands, bundle.window) as src:
        result = score_scene(src, bundle, stride, device, batch_size, str(scene_path), on_tiles=lambda w, t: taps.append((w, t)))
        write_scene_outputs(src, result, bundle, stride, work / "map.tif", work / "map.gpkg")
    synchronize(device)
    return time.perf_counter() - start, result, taps


def plain_mean(shape: tuple[int, int], window: int, taps: list) -> Blender:
    """The same tiles as a plain mean (what predict wrote before the tapered blend); its weight sum counts windows."""
    flat = Blender(*shape, window, floor=1.0)
    for where, tiles in taps:
        flat.add_batch(where, tiles)
    return flat


def fully_covered(flat: Blender, stride: int) -> np.ndarray:
    """Pixels whose every window on the grid was scored (next to no-data, windows are skipped and fewer cover)."""
    every = Blender(*flat.total.shape, flat.window, floor=1.0)
    for r in window_offsets(flat.total.shape[0], stride, flat.window):
        for c in window_offsets(flat.total.shape[1], stride, flat.window):
            every.add(r, c, 0.0)
    return flat.weight_sum == every.weight_sum


def seam_jumps(probability: np.ndarray, size: int, stride: int, window: int) -> tuple[float, float]:
    """Largest neighbour jump across window boundaries and inside windows, both axes (NaN pixels left out)."""
    bounds = window_boundaries(window_offsets(size, stride, window), window)
    rows, cols = neighbour_jumps(probability, bounds, axis=0), neighbour_jumps(probability, bounds, axis=1)
    return max(rows[0], cols[0]), max(rows[1], cols[1])


def warm_up(bundle: Bundle, batches: list[torch.Tensor], device: torch.device, batch_size: int, work: Path) -> None:
    """One batch through both paths and one tiny map written first: allocations, kernel set-up and
    the first imports of the GIS libraries are not what is compared."""
    from rasterio.crs import CRS
    from rasterio.transform import from_origin

    bundle.score_inputs(batches[0], device, batch_size)
    predict(bundle.networks[0], batches[0], bundle_dim(bundle), device, batch_size, with_features=True, tta=int(bundle.manifest["tta"]))
    georef = Georef(CRS.from_epsg(32645), from_origin(300000.0, 3100000.0, PIXEL_M, PIXEL_M))
    write_map_outputs(np.ones((8, 8), np.float32), georef, 0.5, work / "warm.tif", work / "warm.gpkg", {})


def save_figure(path: Path, scene: np.ndarray, maps: dict[str, np.ndarray], threshold: float, step: int) -> None:
    """The scene's RGB (2-98 % stretch), then each probability map (grey: no data) with the threshold's contour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb = scene[[BAND_INDEX["Red"], BAND_INDEX["Green"], BAND_INDEX["Blue"]], ::step, ::step].transpose(1, 2, 0)
    valid = np.isfinite(rgb).all(axis=2) & (rgb != NODATA).all(axis=2)
    low, high = np.percentile(rgb[valid], [2, 98])
    shown = np.clip((rgb - low) / (high - low), 0, 1)
    shown[~valid] = 1.0
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(5.6 * (1 + len(maps)) + 0.8, 5.6), constrained_layout=True)
    axes[0].imshow(shown)
    axes[0].set_title("synthetic scene (RGB; white: no data)")
    overlay = None
    for ax, (title, probability) in zip(axes[1:], maps.items()):
        prob = probability[::step, ::step]
        ax.set_facecolor("0.75")
        overlay = ax.imshow(np.ma.masked_invalid(prob), cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
        ax.contour(np.nan_to_num(prob, nan=0.0) >= threshold, levels=[0.5], colors="cyan", linewidths=0.8)
        ax.set_title(f"{title}\n(cyan: >= threshold {threshold:.2f})")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(overlay, ax=axes[-1], shrink=0.8, label="landslide probability")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def measure(bundle: Bundle, scene_path: Path, work: Path, args: argparse.Namespace, device: torch.device) -> dict:
    """The three timings (best of ``--repeats``) and predict's result."""
    batches = scene_batches(bundle, scene_path, args.stride, args.batch_size)
    warm_up(bundle, batches, device, args.batch_size, work)
    best = {"predict": np.inf, "bare": np.inf, "network": np.inf}
    for _ in range(args.repeats):
        seconds, result, taps = predict_seconds(bundle, scene_path, work, args.stride, device, args.batch_size)
        best["predict"] = min(best["predict"], seconds)
        best["bare"] = min(best["bare"], bare_forward_seconds(bundle, batches, device, args.batch_size))
        best["network"] = min(best["network"], network_seconds(bundle, batches, device))
    assert result.n_scored == sum(map(len, batches)), "the baselines must see the windows predict scored"
    return {**best, "result": result, "taps": taps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("models/bundle"))
    parser.add_argument("--size", type=int, default=4096, help="scene width and height in pixels")
    parser.add_argument("--stride", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="time each path this many times, keep the fastest")
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
        m = measure(bundle, scene_path, work, args, device)
        result = m["result"]
        flat = plain_mean(result.probability.shape, bundle.window, m["taps"])
        mean_map, full = flat.result(), fully_covered(flat, args.stride)
        if args.figure:
            maps = {"plain mean of the windows": mean_map, "Hann-weighted blend (predict)": result.probability}
            save_figure(args.figure, scene, maps, bundle.threshold, max(1, args.size // 1024))
            print(f"figure: {args.figure}")

    n, km2 = result.n_scored, args.size * args.size * PIXEL_M**2 / 1e6
    predict_s, forward_s, network_s = m["predict"], m["bare"], m["network"]
    print(f"bundle: {bundle.manifest['n_folds']} x {bundle.manifest['backbone']} + {bundle.head}, tta {bundle.manifest['tta']}, device {device}")
    print(f"windows: {n} scored of {result.n_windows} (stride {args.stride}; the rest touch no-data)")
    print(f"predict: {predict_s:.2f} s, {n / predict_s:.1f} patches/s, {predict_s / km2:.4f} s/km^2 at {PIXEL_M:g} m pixels ({km2:.0f} km^2)")
    print(f"bare forward: {forward_s:.2f} s, {n / forward_s:.1f} patches/s")
    print(f"networks alone: {network_s:.2f} s, {n / network_s:.1f} patches/s")
    for name, probability in (("plain mean", mean_map), ("blended", result.probability)):
        across, inside = seam_jumps(np.where(full, probability, np.nan), args.size, args.stride, bundle.window)
        print(f"seams {name}: max neighbour jump {across:.4f} across window edges, {inside:.4f} inside windows "
              f"({full.mean():.1%} of the pixels: those every grid window covering them was scored)")
    print(f"ratio networks: {predict_s / network_s:.3f}")
    print(f"ratio: {predict_s / forward_s:.3f}")


if __name__ == "__main__":
    main()
