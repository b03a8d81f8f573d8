"""Scene prediction throughput and map scores: `landslide-dvc predict` on a continuous synthetic scene.

    python bench/predict_scene.py [--bundle models/bundle | l4s/models/seg_bundle] [--size 2048] [--stride S]
                                  [--device auto] [--batch-size B] [--repeats 1] [--figure F.png] [--workdir DIR]
                                  [--windows blend|intersection]

The scene is the one `synthesize_scene` draws (`landslide_dvc.synthetic.scenes`), at ``--size``:
one continuous landscape with every landslide known, a no-data corner, 10 m UTM pixels. A window
classifier bundle (models/bundle) gets the Zindi scene (12 bands at the archive's scales, the
parameters of params.yaml's ``scene`` section); a segmentation bundle (l4s/models/seg_bundle) gets
the Landslide4Sense scene (14 rescaled bands, l4s/params.yaml). It is mapped exactly as
`landslide-dvc predict SCENE.tif` does (strip reading, no-data masking, per-window scale check,
preprocessing once per strip, batched TTA views, the kind's window combination (the classifier's
intersection, the U-Net's edge-tapered blend; `--windows` as predict's), COG + GeoPackage writing)
and the map is scored against the truth as `score_map` does. Two baselines get the same windows,
already preprocessed and in the same batches:
  bare forward     the pipeline's own prediction path, views built one at a time: per fold
                   `core.inference.predict` (extract_embeddings') for the classifier; per TTA view
                   `core.segmentation.predict_probabilities` (train_seg's) for the U-Net
  networks alone   the networks' forward passes on view batches built beforehand (a floor)
One batch and one tiny map go through first (warm-up); ``--repeats`` keeps each path's fastest
time. The seam lines compare the map with a plain mean of the same tiles: the largest jump between
neighbouring pixels across window edges and inside windows, over the pixels every grid window
covering them was scored. Last line: `ratio: X` = predict time / bare forward time (goal <= 1.2).
``--figure`` writes a PNG of the scene's RGB, the plain mean and predict's map.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from landslide_dvc.core.bands import rgb_names
from landslide_dvc.core.devices import autocast, select_device, to_memory_format
from landslide_dvc.core.geo import Georef
from landslide_dvc.core.inference import dihedral_views, predict, view_mean
from landslide_dvc.core.model import embed, resize_input
from landslide_dvc.core.params import get_section, load_params
from landslide_dvc.core.segmentation import predict_probabilities
from landslide_dvc.formats.scene_folder import SCENE_FILE, read_truth, utm_georef, write_scene_folder
from landslide_dvc.pipeline.score_map import object_scores, pixel_scores
from landslide_dvc.serve.blend import Blender, neighbour_jumps, window_boundaries
from landslide_dvc.serve.bundle import Bundle, load_bundle
from landslide_dvc.serve.maps import MapFiles, SceneMap, find_regions, write_map_outputs
from landslide_dvc.serve.predict import SceneResult, scene_map, score_scene
from landslide_dvc.serve.scene_reader import open_scene, strip_windows, window_offsets
from landslide_dvc.serve.seg_bundle import SegBundle, undo_dihedral_views
from landslide_dvc.synthetic.scenes import PIXEL_M, DrawnScene, SceneParams, draw_zindi_scene
from landslide_dvc.synthetic.stand_in import SynthesizeParams
from landslide_dvc.synthetic.stand_in_l4s import SynthesizeL4SParams, draw_l4s_scene

Model = Bundle | SegBundle


def draw_scene(bundle: Model, size: int, seed: int) -> tuple[DrawnScene, SceneParams]:
    """The pipeline's scene of the bundle's kind, at ``size`` px (the rest of its params file's ``scene`` section)."""
    params_file = "l4s/params.yaml" if isinstance(bundle, SegBundle) else "params.yaml"
    params = load_params(params_file)
    scene_params = SceneParams(**{**params["scene"], "size": size, "seed": seed})
    if isinstance(bundle, SegBundle):
        return draw_l4s_scene(scene_params, get_section(params, SynthesizeL4SParams, "synthesize_l4s")), scene_params
    return draw_zindi_scene(scene_params, get_section(params, SynthesizeParams, "synthesize")), scene_params


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def scene_batches(bundle: Model, scene_path: Path, stride: int, batch_size: int) -> list[torch.Tensor]:
    """The windows predict scores, preprocessed, in the batches predict forms (not timed)."""
    w = bundle.window
    with open_scene(scene_path, bundle.bands, w) as src:
        cols = window_offsets(src.width, stride, w)
        found = [strip_windows(src, r, cols, w)[0] for r in window_offsets(src.height, stride, w)]
    images = torch.from_numpy(bundle.preprocess(np.concatenate(found)))
    return list(torch.split(images, batch_size))


def bare_forward_seconds(bundle: Model, batches: list[torch.Tensor], device: torch.device, batch_size: int) -> float:
    """Seconds of the pipeline's own prediction path on the windows, views built one at a time."""
    synchronize(device)
    start = time.perf_counter()
    for images in batches:
        if isinstance(bundle, SegBundle):  # train_seg's path, once per TTA view, then turned back and averaged
            views = [predict_probabilities(bundle.network, v.numpy(), batch_size * bundle.tta, device)  # as many images per pass
                     for v in dihedral_views(images, bundle.tta)]
            view_mean(undo_dihedral_views(torch.from_numpy(np.concatenate(views)), bundle.tta), bundle.tta)
        else:  # extract_embeddings' path, once per fold
            for network in bundle.networks:
                predict(network, images, int(bundle.manifest["input_size"]), device, batch_size, with_features=True,
                        tta=int(bundle.manifest["tta"]))
    synchronize(device)
    return time.perf_counter() - start


@torch.no_grad()
def network_seconds(bundle: Model, batches: list[torch.Tensor], device: torch.device) -> float:
    """Seconds of the networks alone on view batches built beforehand (a floor for any predict)."""
    tta = int(bundle.manifest["tta"])
    views = [to_memory_format(torch.cat(dihedral_views(b.to(device), tta)), device) for b in batches]
    if isinstance(bundle, Bundle):
        views = [resize_input(x, int(bundle.manifest["input_size"])) for x in views]
    networks = [bundle.network] if isinstance(bundle, SegBundle) else bundle.networks
    synchronize(device)
    start = time.perf_counter()
    for x in views:
        with autocast(device):
            for network in networks:
                if isinstance(bundle, SegBundle):
                    network(x)
                else:
                    embed(network, x)
    synchronize(device)
    return time.perf_counter() - start


def predict_seconds(bundle: Model, scene_path: Path, work: Path, stride: int, device: torch.device, batch_size: int) -> tuple[float, SceneResult, list]:
    """Seconds of `landslide-dvc predict SCENE.tif` (read, check, preprocess, score, blend, COG + polygons)."""
    taps: list = []
    synchronize(device)
    start = time.perf_counter()
    with open_scene(scene_path, bundle.bands, bundle.window) as src:
        result = score_scene(src, bundle, stride, device, batch_size, str(scene_path), on_tiles=lambda w, t: taps.append((w, t)))
        write_map_outputs(scene_map(result.probability, result.uncertainty, Georef(src.crs, src.transform), bundle, stride), MapFiles(work / "map.tif", work / "map.gpkg"))
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


def mean_seam_jumps(probability: np.ndarray, size: int, stride: int, window: int) -> tuple[float, float]:
    """Mean neighbour jump across window boundaries and inside windows, both axes (NaN pairs left out).

    A pixel map has real edges everywhere, so its largest jumps are the same across and inside window
    edges; seams show as a higher mean across them.
    """
    bounds = window_boundaries(window_offsets(size, stride, window), window)
    sums = np.zeros(2)
    counts = np.zeros(2)
    for axis in (0, 1):
        jumps = np.abs(np.diff(probability.astype(np.float64), axis=axis))
        across = np.zeros(jumps.shape[axis], bool)
        across[[b - 1 for b in bounds if 0 < b < probability.shape[axis]]] = True
        for k, part in enumerate((np.compress(across, jumps, axis=axis), np.compress(~across, jumps, axis=axis))):
            finite = part[np.isfinite(part)]
            sums[k] += finite.sum()
            counts[k] += finite.size
    return float(sums[0] / max(counts[0], 1)), float(sums[1] / max(counts[1], 1))


def seam_jumps(probability: np.ndarray, size: int, stride: int, window: int) -> tuple[float, float]:
    """Largest neighbour jump across window boundaries and inside windows, both axes (NaN pixels left out)."""
    bounds = window_boundaries(window_offsets(size, stride, window), window)
    rows, cols = neighbour_jumps(probability, bounds, axis=0), neighbour_jumps(probability, bounds, axis=1)
    return max(rows[0], cols[0]), max(rows[1], cols[1])


def warm_up(bundle: Model, batches: list[torch.Tensor], device: torch.device, batch_size: int, work: Path, georef: Georef) -> None:
    """One batch through both paths and one tiny map written first: allocations, kernel set-up and
    the first imports of the GIS libraries are not what is compared."""
    bundle.predict_tiles(batches[0].numpy(), device, batch_size)
    bare_forward_seconds(bundle, batches[:1], device, batch_size)
    write_map_outputs(SceneMap(np.ones((8, 8), np.float32), georef, 0.5, {}), MapFiles(work / "warm.tif", work / "warm.gpkg"))


def save_figure(path: Path, scene: DrawnScene, maps: dict[str, np.ndarray], threshold: float, step: int) -> None:
    """The scene's RGB (2-98 % stretch), then each probability map (grey: no data) with the threshold's contour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = rgb_names(scene.band_names) or scene.band_names[:3]
    rgb = scene.bands[[scene.band_names.index(n) for n in names], ::step, ::step].transpose(1, 2, 0)
    valid = scene.valid[::step, ::step]
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


def measure(bundle: Model, scene_path: Path, work: Path, args: argparse.Namespace, device: torch.device, georef: Georef) -> dict:
    """The three timings (best of ``--repeats``) and predict's result."""
    batches = scene_batches(bundle, scene_path, args.stride, args.batch_size)
    warm_up(bundle, batches, device, args.batch_size, work, georef)
    best = {"predict": np.inf, "bare": np.inf, "network": np.inf}
    for _ in range(args.repeats):
        seconds, result, taps = predict_seconds(bundle, scene_path, work, args.stride, device, args.batch_size)
        best["predict"] = min(best["predict"], seconds)
        best["bare"] = min(best["bare"], bare_forward_seconds(bundle, batches, device, args.batch_size))
        best["network"] = min(best["network"], network_seconds(bundle, batches, device))
    assert result.n_scored == sum(map(len, batches)), "the baselines must see the windows predict scored"
    return {**best, "result": result, "taps": taps}


def describe(bundle: Model) -> str:
    m = bundle.manifest
    if isinstance(bundle, SegBundle):
        return f"U-Net ({m['architecture']['encoder']}), tta {bundle.tta}"
    return f"{m['n_folds']} x {m['backbone']} + {bundle.head}, tta {m['tta']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("models/bundle"))
    parser.add_argument("--size", type=int, default=2048, help="scene width and height in pixels")
    parser.add_argument("--stride", type=int, help="default: half the bundle's window (predict's default)")
    parser.add_argument("--batch-size", type=int, help="default: predict's for the bundle's kind")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="time each path this many times, keep the fastest")
    parser.add_argument("--figure", type=Path, help="write a PNG of the predicted map here (e.g. docs/predict_map.png)")
    parser.add_argument("--windows", choices=["blend", "intersection"], help="as predict's --windows (default: the bundle kind's)")
    parser.add_argument("--workdir", type=Path, help="keep the scene and outputs here (default: a temporary folder)")
    args = parser.parse_args()

    device = select_device(args.device, "--device")
    bundle = load_bundle(args.bundle).to(device)
    if args.windows:
        bundle.override_window_combination(args.windows)
    label = {"blend": "blended", "intersection": "intersection"}[bundle.window_combination]
    args.stride = args.stride or bundle.window // 2
    args.batch_size = args.batch_size or bundle.default_batch_size
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        scene, scene_params = draw_scene(bundle, args.size, args.seed)
        georef = utm_georef(scene_params.utm_epsg, scene_params.origin_m, PIXEL_M)
        write_scene_folder(work, scene.bands, scene.band_names, scene.scars, scene.valid, georef, {})
        scene_path = work / SCENE_FILE
        print(f"scene: {args.size} x {args.size} px, {len(scene.band_names)} bands, {scene.n_scars} scars placed, "
              f"drawn and written in {time.perf_counter() - start:.1f} s")
        m = measure(bundle, scene_path, work, args, device, georef)
        result = m["result"]
        truth = read_truth(work)
        flat = plain_mean(result.probability.shape, bundle.window, m["taps"])
        mean_map, full = flat.result(), fully_covered(flat, args.stride)
        if args.figure:
            maps = {"plain mean of the windows": mean_map, f"predict's map ({bundle.window_combination})": result.probability}
            save_figure(args.figure, scene, maps, bundle.threshold, max(1, args.size // 1024))
            print(f"figure: {args.figure}")

    n, km2 = result.n_scored, args.size * args.size * PIXEL_M**2 / 1e6
    predict_s, forward_s, network_s = m["predict"], m["bare"], m["network"]
    pixel = pixel_scores(result.probability, truth, bundle.threshold)
    objects = object_scores(truth.polygons, find_regions(result.probability, bundle.threshold, georef).geometries)
    print(f"bundle: {describe(bundle)}, window {bundle.window} px, device {device}")
    print(f"windows: {n} scored of {result.n_windows} (stride {args.stride}; the rest touch no-data)")
    print(f"predict: {predict_s:.2f} s, {n / predict_s:.1f} windows/s, {predict_s / km2:.4f} s/km^2, "
          f"{km2 / predict_s:.3f} km^2/s at {PIXEL_M:g} m pixels ({km2:.0f} km^2)")
    print(f"bare forward: {forward_s:.2f} s, {n / forward_s:.1f} windows/s")
    print(f"networks alone: {network_s:.2f} s, {n / network_s:.1f} windows/s")
    print(f"map vs truth: pixel F1 {pixel['f1']:.3f} (P {pixel['precision']:.3f}, R {pixel['recall']:.3f}, IoU {pixel['iou']:.3f}); "
          f"objects found {objects['n_found']}/{objects['n_true']}, right {objects['n_right']}/{objects['n_pred']}")
    for name, probability in (("plain mean", mean_map), (label, result.probability)):
        across, inside = seam_jumps(np.where(full, probability, np.nan), args.size, args.stride, bundle.window)
        mean_across, mean_inside = mean_seam_jumps(np.where(full, probability, np.nan), args.size, args.stride, bundle.window)
        print(f"seams {name}: max neighbour jump {across:.4f} across window edges, {inside:.4f} inside windows; mean "
              f"{mean_across:.4f} across, {mean_inside:.4f} inside ({full.mean():.1%} of the pixels: those every grid "
              f"window covering them was scored)")
    print(f"ratio networks: {predict_s / network_s:.3f}")
    print(f"ratio: {predict_s / forward_s:.3f}")


if __name__ == "__main__":
    main()
