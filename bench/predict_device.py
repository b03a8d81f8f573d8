"""Both bundles' window predictions on an accelerator: agreement with the CPU and throughput per batch size.

    python bench/predict_device.py [--size 2048] [--device cuda] [--out FILE.json]

The pipelines' continuous scenes (params.yaml's and l4s/params.yaml's ``scene`` sections, at
``--size``) are drawn in memory; the windows are those predict scores (fully valid windows every
half window), preprocessed by the bundle as predict does. For models/bundle (window classifier)
and l4s/models/seg_bundle (U-Net) it prints:
  agreement   the first 64 windows' per-pixel probabilities on ``--device`` (bf16 autocast and
              channels-last on CUDA) against the CPU's: largest and mean difference, and the share
              of pixels whose label at the bundle's threshold differs
  throughput  `predict_tiles` on every window (TTA views batched, heads included) per batch size,
              after a warm-up at that size: windows/s and the area mapped, km²/s and km²/h, where
              each window advances one stride x stride cell of the grid (10 m pixels). Scene
              reading, preprocessing, blending and writing are not in it (bench/predict_scene.py
              times the whole of predict).
Without CUDA it runs on the CPU against itself (a dry run of the script).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import landslide_dvc  # noqa: F401  (CPU pins before numpy and torch)

# isort: split
import numpy as np
import torch

from landslide_dvc.core.params import get_section, load_params
from landslide_dvc.serve.bundle import load_bundle
from landslide_dvc.serve.scene_reader import window_offsets
from landslide_dvc.synthetic.scenes import PIXEL_M, SceneParams, draw_zindi_scene
from landslide_dvc.synthetic.stand_in import SynthesizeParams
from landslide_dvc.synthetic.stand_in_l4s import SynthesizeL4SParams, draw_l4s_scene

BUNDLES = (("classifier", "models/bundle", "params.yaml"), ("unet", "l4s/models/seg_bundle", "l4s/params.yaml"))
BATCH_SIZES = {"classifier": (256, 64, 1024), "unet": (4, 32, 128, 512)}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def scene_windows(kind: str, params_file: str, bundle: object, size: int) -> np.ndarray:
    params = load_params(params_file)
    scene_params = SceneParams(**{**params["scene"], "size": size})
    if kind == "unet":
        scene = draw_l4s_scene(scene_params, get_section(params, SynthesizeL4SParams, "synthesize_l4s"))
    else:
        scene = draw_zindi_scene(scene_params, get_section(params, SynthesizeParams, "synthesize"))
    w = bundle.window  # type: ignore[attr-defined]
    offsets = window_offsets(size, w // 2, w)
    found = []
    for r in offsets:
        cols = [c for c in offsets if scene.valid[r : r + w, c : c + w].all()]
        if cols:
            found.append(bundle.window_inputs(scene.bands[:, r : r + w, :], cols))  # type: ignore[attr-defined]
    return np.concatenate(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    report: dict = {"torch": torch.__version__, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "size_px": args.size}
    for kind, path, params_file in BUNDLES:
        bundle = load_bundle(path)
        inputs = scene_windows(kind, params_file, bundle, args.size)
        n, stride = len(inputs), bundle.window // 2
        reference = bundle.predict_tiles(inputs[:64], torch.device("cpu"), bundle.default_batch_size).probability
        bundle.to(device)
        tiles = bundle.predict_tiles(inputs[:64], device, bundle.default_batch_size).probability
        labels_differ = (tiles >= bundle.threshold) != (reference >= bundle.threshold)
        record = {
            "windows": n, "window_px": bundle.window, "stride_px": stride,
            "max_abs_diff_vs_cpu": float(np.abs(tiles - reference).max()),
            "mean_abs_diff_vs_cpu": float(np.abs(tiles - reference).mean()),
            "label_disagreement_share": float(labels_differ.mean()),
            "throughput": {},
        }
        km2 = n * (stride * PIXEL_M / 1000) ** 2
        for batch_size in BATCH_SIZES[kind] if device.type == "cuda" else BATCH_SIZES[kind][:1]:
            bundle.predict_tiles(inputs[: 2 * batch_size], device, batch_size)
            synchronize(device)
            start = time.perf_counter()
            bundle.predict_tiles(inputs, device, batch_size)
            synchronize(device)
            seconds = time.perf_counter() - start
            record["throughput"][str(batch_size)] = {
                "s": round(seconds, 3), "windows_per_s": round(n / seconds, 1), "km2_per_s": round(km2 / seconds, 1),
                "km2_per_h": round(3600 * km2 / seconds),
            }
        if device.type == "cuda":
            record["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        report[kind] = record
        print(kind, json.dumps(record), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
