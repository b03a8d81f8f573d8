"""The `landslide-dvc` command: `landslide-dvc predict ...` and `landslide-dvc experiments ...`.

`landslide-dvc experiments` is `python -m landslide_dvc.experiments` (queue, report, flags) under the
package's command; the module entry keeps working.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from landslide_dvc.core.errors import LandslideError


def _predict_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict",
        help="score .npy patches, a Zindi test folder or a GeoTIFF scene with a model bundle",
        description="With a classifier bundle (models/bundle): score a folder of (64, 64, 12) .npy patches (-> CSV of ID, "
        "probability, label), a Zindi-layout folder with Test.csv (-> challenge submission) or a 12-band GeoTIFF "
        "(-> probability Cloud Optimized GeoTIFF + polygons). With a segmentation bundle (l4s/models/seg_bundle): map a "
        "14-band Landslide4Sense GeoTIFF the same way, pixel by pixel.",
    )
    p.add_argument("path", type=Path, help="patch folder, Zindi-layout folder, or .tif/.tiff scene")
    p.add_argument(
        "--bundle", type=Path, default=Path("models/bundle"),
        help="model bundle, classifier or segmentation (default: models/bundle)",
    )
    p.add_argument("--out", type=Path, required=True, help="CSV for folders; probability COG (.tif) for a scene")
    p.add_argument(
        "--stride", type=int, help="scene: pixels between window starts (default: half the bundle's window, 32 or 64)",
    )
    p.add_argument(
        "--polygons", type=Path,
        help="scene: regions at/above the threshold, .gpkg (scene CRS) or .geojson (WGS 84); default: --out with .gpkg",
    )
    p.add_argument(
        "--batch-size", type=int,
        help="patches per forward pass, times the TTA views (default: 256 for a classifier, 4 for a segmentation bundle)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "cuda:auto"], help="as train.device")


def predict_command(args: argparse.Namespace) -> str:
    from landslide_dvc.core.devices import select_device
    from landslide_dvc.serve.bundle import load_bundle
    from landslide_dvc.serve.predict import run_predict

    if args.batch_size is not None and args.batch_size < 1:
        raise LandslideError(f"--batch-size {args.batch_size} must be >= 1")
    device = select_device(args.device, "predict --device")
    bundle = load_bundle(args.bundle).to(device)
    return run_predict(
        bundle, args.path, args.out, device=device, batch_size=args.batch_size, stride=args.stride, polygons=args.polygons
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="landslide-dvc", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _predict_parser(sub)
    exp = sub.add_parser("experiments", add_help=False, help="queue and report experiment tables (landslide-dvc experiments -h)")
    exp.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "experiments":
        from landslide_dvc.experiments import main as experiments_main

        return experiments_main(args.rest)
    start = time.perf_counter()
    try:
        summary = predict_command(args)
    except LandslideError as exc:
        print(f"landslide-dvc predict: error: {exc}", file=sys.stderr)
        return 1
    print(f"landslide-dvc predict: {summary} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
