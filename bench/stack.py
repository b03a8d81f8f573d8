"""`landslide-dvc stack` throughput against bare rasterio reading and warping the same inputs, in one run.

    python bench/stack.py [--size 2048] [--repeats 2] [--workdir DIR]

Writes one post-event Sentinel-2 product (four uint16 bands, baseline-04.00 offset stated in its
STAC Item) and eight Sentinel-1 acquisitions (VV and VH, linear power, pre and post event, both
orbits; the ascending ones on a grid shifted by half a pixel, so that they are resampled), then
times `serve.stack.run_stack` building the scene (reading, warping, offsets, dB, medians, COG,
provenance, STAC Item) against a bare pass: `rasterio.warp.reproject` of the same twelve files
onto the same grid, bilinear, into float32 arrays, and nothing else. Prints Mpx/s for both and
`ratio: X` = stack time / bare time (goal <= 1.3). The fastest of ``--repeats`` runs counts.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject

from landslide_dvc.serve.stack import StackOptions, build_scene, read_input, write_scene

CRS = "EPSG:32645"
EVENT = dt.date(2024, 6, 15)


def write(path: Path, values: np.ndarray, transform) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=values.shape[1], height=values.shape[0], count=1, dtype=values.dtype,
                       crs=CRS, transform=transform, tiled=True, compress="deflate") as dst:
        dst.write(values, 1)


def make_products(folder: Path, size: int) -> tuple[list[Path], list[Path]]:
    """The Items, and the twelve band files they point at."""
    rng = np.random.default_rng(0)
    grid = from_origin(600000.0, 3100000.0, 10.0, 10.0)
    shifted = from_origin(600005.0, 3100000.0, 10.0, 10.0)
    files, items = [], []
    assets = {}
    for band in ("B04", "B03", "B02", "B08"):
        path = folder / f"S2_{band}.tif"
        write(path, rng.integers(1000, 5000, (size, size), dtype=np.uint16), grid)
        files.append(path)
        assets[band] = {"href": path.name}
    item = {"type": "Feature", "stac_version": "1.0.0", "id": "S2", "geometry": None, "assets": assets,
            "properties": {"platform": "sentinel-2a", "datetime": "2024-06-18T05:00:00Z", "s2:processing_baseline": "05.10"}}
    (folder / "S2.json").write_text(json.dumps(item))
    items.append(folder / "S2.json")
    for orbit in ("descending", "ascending"):
        for date in ("2024-06-01", "2024-06-20"):
            name = f"S1_{orbit}_{date}"
            assets = {}
            for pol in ("vv", "vh"):
                path = folder / f"{name}_{pol}.tif"
                write(path, rng.uniform(0.001, 0.3, (size, size)).astype(np.float32), shifted if orbit == "ascending" else grid)
                files.append(path)
                assets[pol] = {"href": path.name}
            item = {"type": "Feature", "stac_version": "1.0.0", "id": name, "geometry": None, "assets": assets,
                    "properties": {"platform": "sentinel-1a", "datetime": f"{date}T00:00:00Z", "sat:orbit_state": orbit}}
            (folder / f"{name}.json").write_text(json.dumps(item))
            items.append(folder / f"{name}.json")
    return items, files


def bare(files: list[Path], size: int) -> None:
    grid = from_origin(600000.0, 3100000.0, 10.0, 10.0)
    for path in files:
        out = np.empty((size, size), np.float32)
        with rasterio.open(path) as src:
            reproject(src.read(1), out, src_transform=src.transform, src_crs=src.crs, dst_transform=grid, dst_crs=CRS,
                      resampling=Resampling.bilinear)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-stack-"))
    work.mkdir(parents=True, exist_ok=True)
    items, files = make_products(work, args.size)
    build_s, write_s, bare_s = [], [], []
    for k in range(args.repeats):
        out = work / f"scene_{k}.tif"
        start = time.perf_counter()
        acquisitions = [read_input(p) for p in items]
        scene, grid, provenance = build_scene(acquisitions, StackOptions(EVENT))  # reading, warping, offsets, dB, medians
        build_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        write_scene(out, scene, grid, provenance, acquisitions)  # COG, provenance, STAC Item
        write_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        bare(files, args.size)
        bare_s.append(time.perf_counter() - start)
    mpx = args.size * args.size / 1e6
    build, write_, bare_ = min(build_s), min(write_s), min(bare_s)
    print(f"inputs: {len(files)} band files of {args.size} x {args.size} px (4 Sentinel-2, 8 Sentinel-1)")
    print(f"stack: {build + write_:.2f} s, {mpx / (build + write_):.2f} Mpx/s of scene "
          f"(building {build:.2f} s, writing the COG, provenance and Item {write_:.2f} s)")
    print(f"bare read + warp: {bare_:.2f} s, {mpx / bare_:.2f} Mpx/s")
    print(f"ratio building: {build / bare_:.3f}")
    print(f"ratio: {(build + write_) / bare_:.3f}")
    if args.workdir is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
