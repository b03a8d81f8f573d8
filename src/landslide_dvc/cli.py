"""The `landslide-dvc` command: `landslide-dvc predict ...`, `stack ...`, `describe ...` and `experiments ...`.

`landslide-dvc experiments` is `python -m landslide_dvc.experiments` (queue, report, flags, blend) under the
package's command; the module entry keeps working.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

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
    p.add_argument(
        "path", type=Path, nargs="+",
        help="patch folder, Zindi-layout folder, or .tif/.tiff scene; many scenes: a folder of .tif/.tiff files, a quoted "
        "glob, a .txt list (one path a line) or several paths, each mapped into the --out folder",
    )
    p.add_argument(
        "--bundle", type=Path, default=Path("models/bundle"),
        help="model bundle, classifier or segmentation (default: models/bundle)",
    )
    p.add_argument(
        "--out", type=Path, required=True,
        help="CSV for folders; probability COG (.tif) for a scene; a folder for many scenes (<stem>.tif, .gpkg, .json, landslides.gpkg)",
    )
    p.add_argument(
        "--stride", type=int, help="scene: pixels between window starts (default: half the bundle's window, 32 or 64)",
    )
    p.add_argument(
        "--windows", choices=["blend", "intersection"],
        help="scene: how overlapping windows make a pixel's probability: blend (Hann-weighted mean; the U-Net's "
        "default) or intersection (the lowest covering window's score; the classifier's default: a pixel is a "
        "landslide only where every window over it is)",
    )
    p.add_argument(
        "--polygons", type=Path,
        help="scene: regions at/above the threshold, .gpkg (scene CRS) or .geojson (WGS 84); default: --out with .gpkg",
    )
    p.add_argument(
        "--batch-size", type=int,
        help="patches per forward pass, times the TTA views (default: 256 for a classifier, 4 for a segmentation bundle)",
    )
    p.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda", "cuda:auto"],
        help="as train.device; many scenes: chosen by each worker (cuda:auto: one GPU per worker)",
    )
    rules = p.add_argument_group("mapping rules of a scene's polygons (default: the bundle's, chosen on validation data)")
    rules.add_argument("--min-area", type=float, metavar="M2", help="minimum mapping unit: drop polygons under M2 m^2")
    rules.add_argument(
        "--min-slope", type=float, metavar="VALUE",
        help="no landslide where the slope is below VALUE: the scene's slope band (L4S, its units) or, with --dem, degrees",
    )
    rules.add_argument(
        "--dem", type=Path, metavar="DEM.tif",
        help="elevations in metres (any CRS, warped onto the scene): the slope --min-slope DEGREES limits (Zindi scenes)",
    )
    rules.add_argument("--no-slope-rule", action="store_true", help="switch the bundle's slope rule off")
    rules.add_argument("--fill-holes", type=float, metavar="M2", help="fill holes under M2 m^2 inside a landslide")
    p.add_argument(
        "--datetime", metavar="YYYY-MM-DD",
        help="scene: its acquisition date for the map's STAC Item, where the scene states none (its Item, TIFFTAG_DATETIME)",
    )
    rules.add_argument(
        "--smooth", type=int, default=0, metavar="N",
        help="smooth the polygons' pixel-edge outlines by N passes of Chaikin's corner cutting (default 0: none)",
    )
    region = p.add_argument_group("many scenes (a region)")
    region.add_argument("--workers", type=int, help="start a local Dask cluster of this many worker processes")
    region.add_argument("--scheduler", help="use an existing Dask cluster at this address (tcp://HOST:PORT)")
    region.add_argument(
        "--threads", type=int, default=1,
        help="torch threads per task (default 1; part of the manifest: the last bits of a CPU map depend on it)",
    )
    region.add_argument("--strip-rows", type=int, help="window rows per task (default: serve.region.STRIP_ROWS, 16)")


def wants_region(args: argparse.Namespace) -> bool:
    from landslide_dvc.serve.predict import SCENE_SUFFIXES
    from landslide_dvc.serve.region import is_region_spec

    one_scene_into_folder = (  # `predict scene.tif --out region/`: a region of one scene (an --out with a suffix is a file)
        len(args.path) == 1 and args.path[0].suffix.lower() in SCENE_SUFFIXES and (args.out.is_dir() or not args.out.suffix)
    )
    return is_region_spec(args.path) or one_scene_into_folder or bool(args.workers or args.scheduler)


def apply_rule_options(bundle: Any, args: argparse.Namespace) -> None:
    """predict's --min-area, --min-slope, --no-slope-rule and --fill-holes over the bundle's mapping rules, and
    --windows over its kind's window combination."""
    for flag, value in (("--min-area", args.min_area), ("--fill-holes", args.fill_holes)):
        if value is not None and not value >= 0:
            raise LandslideError(f"{flag} {value} must be an area >= 0 (m^2)")
    if args.min_slope is not None and args.no_slope_rule:
        raise LandslideError("give --min-slope or --no-slope-rule, not both")
    if args.dem is not None and args.min_slope is None:
        raise LandslideError("--dem needs --min-slope DEGREES: the slope limit the DEM's slope is held to")
    if args.smooth < 0:
        raise LandslideError(f"--smooth {args.smooth} must be >= 0 passes")
    if args.min_slope is not None and args.dem is None and "slope" not in bundle.bands:
        raise LandslideError(
            f"--min-slope needs a slope band or --dem DEM.tif, and the bundle's scenes have no slope band "
            f"({', '.join(bundle.bands[:4])}, ...)"
        )
    changes = {"min_area_m2": args.min_area, "fill_holes_m2": args.fill_holes, "min_slope": args.min_slope}
    changes = {k: v for k, v in changes.items() if v is not None}
    if args.no_slope_rule:
        changes["min_slope"] = None
    bundle.override_rules(**changes)
    if args.windows is not None:
        bundle.override_window_combination(args.windows)


def predict_command(args: argparse.Namespace) -> str:
    from landslide_dvc.core.devices import select_device
    from landslide_dvc.serve.bundle import load_bundle
    from landslide_dvc.serve.predict import MapOptions, run_predict

    if args.batch_size is not None and args.batch_size < 1:
        raise LandslideError(f"--batch-size {args.batch_size} must be >= 1")
    if wants_region(args):
        return region_command(args)
    device = select_device(args.device, "predict --device")
    bundle = load_bundle(args.bundle).to(device)
    apply_rule_options(bundle, args)
    return run_predict(
        bundle, args.path[0], args.out, device=device, batch_size=args.batch_size, stride=args.stride, polygons=args.polygons,
        options=MapOptions(args.dem, args.smooth, args.datetime),
    )


class RegionFailed(LandslideError):
    """Some scenes of a region failed (listed above the summary), or its layer could not be written; the others were mapped."""


def region_command(args: argparse.Namespace) -> str:
    from landslide_dvc.core.io import ensure_output_folder
    from landslide_dvc.serve.bundle import load_bundle
    from landslide_dvc.serve.region import STRIP_ROWS, RegionOptions, close_client, predict_region, start_client

    if args.polygons is not None:
        raise LandslideError("--polygons names one scene's file; with many scenes the polygons go to --out/<stem>.gpkg")
    if args.out.suffix.lower() in (".tif", ".tiff", ".csv", ".gpkg"):
        raise LandslideError(f"--out {args.out} looks like a file; with many scenes --out is a folder")
    if args.workers is not None and args.workers < 1:
        raise LandslideError(f"--workers {args.workers} must be >= 1")
    if args.workers and args.scheduler:
        raise LandslideError("give --workers (a new local cluster) or --scheduler (an existing one), not both")
    ensure_output_folder(args.out, "--out")  # before any work: a file, a read-only folder, a parent that is a file
    bundle = load_bundle(args.bundle)
    apply_rule_options(bundle, args)
    options = RegionOptions(
        stride=bundle.window // 2 if args.stride is None else args.stride,
        batch_size=bundle.default_batch_size if args.batch_size is None else args.batch_size,
        threads=args.threads, device=args.device, window_combination=args.windows,
        dem=None if args.dem is None else str(args.dem.resolve()), smooth=args.smooth, datetime=args.datetime,
    )
    client = start_client(args.workers, args.scheduler)
    try:
        if client is not None:
            print(f"landslide-dvc predict: Dask dashboard at {client.dashboard_link}", file=sys.stderr)
        summary = predict_region(args.path, args.out, args.bundle, options, client=client,
                                 strip_rows=args.strip_rows or STRIP_ROWS, model=bundle)
    finally:
        if client is not None:
            close_client(client)
    for scene, error in summary.failed.items():
        print(f"landslide-dvc predict: failed: {scene}: {error}", file=sys.stderr)
    if summary.failed or summary.layer_error:
        raise RegionFailed(summary.line(args.out))
    return summary.line(args.out)


def _describe_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "describe", help="write a bundle's STAC Item with the Machine Learning Model (MLM) extension",
        description="Describe a model bundle for model catalogues: input bands, shape, value scaling and dim order, output "
        "classes and threshold, and the weights with their checksums (STAC MLM, validated by stac-model).",
    )
    p.add_argument("bundle", type=Path, help="a bundle folder (models/bundle or l4s/models/seg_bundle)")
    p.add_argument("--out", type=Path, required=True, help="the Item's JSON file, outside the bundle (e.g. models/bundle.mlm.json)")


def describe_command(args: argparse.Namespace) -> str:
    from landslide_dvc.serve.mlm import run_describe

    return run_describe(args.bundle, args.out)


def _stack_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stack",
        help="build the 12-band scene a classifier bundle maps, from Sentinel-2 and Sentinel-1 products",
        description="Read each product's sensor, date and orbit from its STAC Item or SAFE metadata, split them at "
        "--event-date, remove Sentinel-2 baseline offsets, convert Sentinel-1 backscatter to dB, composite the pre- and "
        "post-event acquisitions by their median, and write the Zindi-band scene GeoTIFF with a provenance JSON.",
    )
    p.add_argument("inputs", type=Path, nargs="+", help="STAC Item JSON files (local assets) and Sentinel-2 SAFE folders")
    p.add_argument("--event-date", required=True, help="YYYY-MM-DD: acquisitions before it are pre-event, after it post-event")
    p.add_argument("--out", type=Path, required=True, help="the scene GeoTIFF (.tif); its provenance goes to <stem>.provenance.json")
    p.add_argument("--bundle", type=Path, help="check the scene against this bundle's bands and optical scale")
    p.add_argument("--crs", help="target CRS (default: the post-event Sentinel-2 product's)")
    p.add_argument("--resolution", type=float, help="target pixel size in the CRS's units (default: the product's, 10 m)")
    p.add_argument("--bounds", type=float, nargs=4, metavar=("LEFT", "BOTTOM", "RIGHT", "TOP"), help="target bounds in the target CRS")
    p.add_argument(
        "--sar-units", choices=["auto", "linear", "db"], default="auto",
        help="Sentinel-1 values: auto (dB where the Item's raster:bands says so, else linear power), linear or db",
    )
    p.add_argument("--mask-scl", help="SCL classes that become no-data, comma-separated (clouds: 3,8,9,10); default: none")


def stack_command(args: argparse.Namespace) -> str:
    import datetime as dt

    from landslide_dvc.serve.stack import StackOptions, run_stack

    try:
        event = dt.date.fromisoformat(args.event_date)
    except ValueError:
        raise LandslideError(f"--event-date {args.event_date!r} is not a date; give YYYY-MM-DD") from None
    try:
        mask = tuple(int(c) for c in args.mask_scl.split(",")) if args.mask_scl else ()
    except ValueError:
        raise LandslideError(f"--mask-scl {args.mask_scl!r} must be SCL class numbers separated by commas, such as 3,8,9,10") from None
    if any(not 0 <= c <= 11 for c in mask):
        raise LandslideError(f"--mask-scl {args.mask_scl}: SCL classes are 0 to 11")
    kind = bands = None
    optical_scale = 10000.0
    if args.bundle is not None:
        from landslide_dvc.serve.bundle import load_bundle

        bundle = load_bundle(args.bundle)
        kind, bands = bundle.kind, bundle.bands
        optical_scale = float(getattr(bundle, "optical_scale", optical_scale))
    options = StackOptions(event, args.crs, args.resolution, args.bounds, args.sar_units, mask, optical_scale)
    return run_stack(args.inputs, args.out, options, kind, bands)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="landslide-dvc", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _predict_parser(sub)
    _stack_parser(sub)
    _describe_parser(sub)
    exp = sub.add_parser("experiments", add_help=False, help="queue, report and blend experiments (landslide-dvc experiments -h)")
    exp.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command == "experiments":
        from landslide_dvc.experiments import main as experiments_main

        return experiments_main(args.rest)
    start = time.perf_counter()
    command = {"stack": stack_command, "describe": describe_command}.get(args.command, predict_command)
    try:
        summary = command(args)
    except LandslideError as exc:
        print(f"landslide-dvc {args.command}: error: {exc}", file=sys.stderr)
        return 1
    print(f"landslide-dvc {args.command}: {summary} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
