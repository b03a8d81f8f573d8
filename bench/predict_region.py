"""Regional mapping throughput: `landslide-dvc predict` over N scenes in one process and on a local Dask cluster.

    python bench/predict_region.py [--bundle models/bundle] [--scenes 4] [--size 512] [--workers 2]
                                   [--stride S] [--batch-size B] [--workdir DIR]

Draws ``--scenes`` synthetic scenes of the bundle's kind (`landslide_dvc.synthetic.scenes`,
each with its own seed, written as `synthesize_scene` writes them), maps them with
`serve.region.predict_region` in this process (1 torch thread, the time inside the bundle's
``predict_tiles`` measured apart), then on a LocalCluster of ``--workers`` single-threaded worker
processes (its start-up, with every worker's imports and bundle load, timed apart), and checks that
both give the same bytes. ``--strip-rows`` sets the window rows per task.

Printed: wall time, windows/s and km²/h of each run; the CPU time of all their processes (on a
loaded machine the wall time of the cluster shows the load, its CPU time the cost); the share of one process's time spent in the
networks; and the projected km²/h per GPU, from the H200 rates of `bench/predict_device.py`
(docs/performance.md, "On a GPU": 2,352 windows/s for the classifier at batch 256, 3,032 for the
U-Net at batch 512) and the windows per km² at the stride (10 m pixels: 10,000 px per km², so
10,000 / stride² windows per km² away from the edges). The projection is the networks alone;
reading, preprocessing, blending and writing are not included, and the second projection adds
this run's measured cost of those per window as if it stayed on the CPU, serial with the GPU.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from landslide_dvc.core.params import get_section, load_params
from landslide_dvc.formats.scene_folder import SCENE_FILE, utm_georef, write_scene_folder
from landslide_dvc.serve.bundle import load_bundle
from landslide_dvc.serve.region import (
    STRIP_ROWS,
    RegionOptions,
    close_client,
    manifest_sha256,
    predict_region,
    start_client,
    worker_model,
)
from landslide_dvc.serve.scene_reader import window_offsets
from landslide_dvc.serve.seg_bundle import SegBundle
from landslide_dvc.synthetic.scenes import PIXEL_M, SceneParams, draw_zindi_scene
from landslide_dvc.synthetic.stand_in import SynthesizeParams
from landslide_dvc.synthetic.stand_in_l4s import SynthesizeL4SParams, draw_l4s_scene

H200_WINDOWS_PER_S = {"classifier": 2352.0, "segmentation": 3032.0}  # docs/performance.md, bench/predict_device.py
M2_PER_KM2 = 1e6


def draw_scenes(bundle: object, folder: Path, count: int, size: int) -> list[Path]:
    params_file = "l4s/params.yaml" if isinstance(bundle, SegBundle) else "params.yaml"
    params = load_params(params_file)
    scenes = []
    for k in range(count):
        scene_params = SceneParams(**{**params["scene"], "size": size, "seed": 100 + k})
        if isinstance(bundle, SegBundle):
            drawn = draw_l4s_scene(scene_params, get_section(params, SynthesizeL4SParams, "synthesize_l4s"))
        else:
            drawn = draw_zindi_scene(scene_params, get_section(params, SynthesizeParams, "synthesize"))
        staging = folder / f"drawn{k}"
        staging.mkdir(parents=True)
        georef = utm_georef(scene_params.utm_epsg, scene_params.origin_m, PIXEL_M)
        write_scene_folder(staging, drawn.bands, drawn.band_names, drawn.scars, drawn.valid, georef, {})
        scene = folder / "scenes" / f"scene{k:02d}.tif"
        scene.parent.mkdir(exist_ok=True)
        (staging / SCENE_FILE).rename(scene)
        scenes.append(scene)
    return scenes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=Path("models/bundle"))
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stride", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--strip-rows", type=int, default=STRIP_ROWS, help="window rows per task")
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    stride = args.stride or bundle.window // 2
    options = RegionOptions(stride, args.batch_size or bundle.default_batch_size, threads=1, device="cpu")
    work = args.workdir or Path(tempfile.mkdtemp(prefix="predict_region-"))
    scenes = draw_scenes(bundle, work, args.scenes, args.size)
    n_windows = args.scenes * len(window_offsets(args.size, stride, bundle.window)) ** 2
    km2 = args.scenes * (args.size * PIXEL_M) ** 2 / M2_PER_KM2
    print(f"{args.scenes} scenes of {args.size} px ({km2:.1f} km² in all), {n_windows} windows at stride {stride}, "
          f"{bundle.kind} bundle {args.bundle}, batch {options.batch_size}, 1 torch thread per task")

    in_networks = 0.0
    cls = type(bundle)
    real_predict_tiles = cls.predict_tiles

    def timed(self, inputs: np.ndarray, device: object, batch_size: int) -> np.ndarray:  # noqa: ANN001
        nonlocal in_networks
        start = time.perf_counter()
        try:
            return real_predict_tiles(self, inputs, device, batch_size)
        finally:
            in_networks += time.perf_counter() - start

    cls.predict_tiles = timed  # this process only: the cluster's workers keep the plain method
    start, cpu_start = time.perf_counter(), time.process_time()
    summary = predict_region([scenes[0].parent], work / "one_process", args.bundle, options, strip_rows=args.strip_rows)
    one_s, one_cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    cls.predict_tiles = real_predict_tiles
    assert not summary.failed, summary.failed

    start = time.perf_counter()
    client = start_client(args.workers, None)
    try:
        sha = manifest_sha256(args.bundle)  # every worker imports torch and loads the bundle before the clock starts
        client.run(lambda: bool(worker_model(str(args.bundle.resolve()), sha, options.device)))
        startup_s = time.perf_counter() - start
        start, cpu_before, driver_before = time.perf_counter(), client.run(time.process_time), time.process_time()
        summary = predict_region([scenes[0].parent], work / "cluster", args.bundle, options, client=client, strip_rows=args.strip_rows)
        cluster_s = time.perf_counter() - start
        cpu_after = client.run(time.process_time)
        cluster_cpu_s = sum(cpu_after[w] - cpu_before[w] for w in cpu_after) + time.process_time() - driver_before
    finally:
        close_client(client)
    assert not summary.failed, summary.failed

    same = all(
        (work / "one_process" / name).read_bytes() == (work / "cluster" / name).read_bytes()
        for name in sorted(p.name for p in (work / "one_process").iterdir())
    )
    per_km2 = n_windows / km2
    print(f"cluster start-up ({args.workers} worker processes, torch imported, bundle loaded on each): {startup_s:.1f} s")
    for label, seconds in [("1 process", one_s), (f"{args.workers} workers", cluster_s)]:
        print(f"{label}: {seconds:.1f} s, {n_windows / seconds:.1f} windows/s, {km2 / seconds * 3600:.0f} km²/h")
    print(f"CPU time (all processes): 1 process {one_cpu_s:.1f} s ({one_cpu_s / n_windows * 1e3:.1f} ms/window); "
          f"{args.workers} workers + driver {cluster_cpu_s:.1f} s ({cluster_cpu_s / n_windows * 1e3:.1f} ms/window, halo windows included)")
    overhead_per_window = (one_s - in_networks) / n_windows
    print(f"one process: {in_networks / one_s:.0%} of the time in the networks ({in_networks / n_windows * 1e3:.1f} ms/window), "
          f"{overhead_per_window * 1e3:.2f} ms/window reading, preprocessing, blending and writing")
    print(f"same bytes in one process and on the cluster: {same}")
    gpu = H200_WINDOWS_PER_S[bundle.kind]
    print(f"windows per km² at stride {stride} (this run, edges included): {per_km2:.1f}; away from edges "
          f"{(1000 / PIXEL_M) ** 2 / stride**2:.2f}")
    projected = gpu * 3600 / ((1000 / PIXEL_M) ** 2 / stride**2)
    with_overhead = 3600 / (((1000 / PIXEL_M) ** 2 / stride**2) * (1 / gpu + overhead_per_window))
    print(f"projected per H200 GPU: {projected:,.0f} km²/h (networks alone, {gpu:,.0f} windows/s); "
          f"{with_overhead:,.0f} km²/h with this run's CPU cost per window outside the networks, serial")


if __name__ == "__main__":
    main()
