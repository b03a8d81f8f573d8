"""Benchmark: generate the full challenge-size synthetic dataset (7,147 train / 5,398 test).

Writes into a temporary folder (deleted afterwards unless --keep) and prints the wall time of
``write_dataset`` (generation and .npy/.csv writing), images/s and MB/s. Goal: < 60 s on 2 cores.

    python bench/synthesize_full.py [--n-train 7147] [--n-test 5398] [--workers N] [--keep]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from landslide.synthetic import SynthesizeParams, default_workers, write_dataset


def _folder_bytes(root: Path) -> int:
    return sum(entry.stat().st_size for entry in root.rglob("*") if entry.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=7147)
    parser.add_argument("--n-test", type=int, default=5398)
    parser.add_argument("--seed", type=int, default=SynthesizeParams().seed)
    parser.add_argument("--workers", type=int, default=None, help="default: usable cores")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temp folder")
    parser.add_argument("--keep", action="store_true", help="keep the generated folder")
    args = parser.parse_args(argv)

    params = dataclasses.replace(SynthesizeParams(), n_train=args.n_train, n_test=args.n_test, seed=args.seed)
    params.validate()
    workers = args.workers or default_workers()
    out = Path(tempfile.mkdtemp(prefix="synthetic-bench-", dir=args.dir))
    n = params.n_train + params.n_test
    print(f"generating {params.n_train} train + {params.n_test} test patches into {out} "
          f"with {workers} worker(s) on {os.cpu_count()} CPU(s)", flush=True)
    try:
        start = time.perf_counter()
        write_dataset(out, params, workers=workers)
        wall = time.perf_counter() - start
        size = _folder_bytes(out)
        print(f"wall time      {wall:8.1f} s  (goal < 60 s)")
        print(f"throughput     {n / wall:8.1f} images/s")
        print(f"written        {size / 1e9:8.2f} GB  ({size / 1e6 / wall:.0f} MB/s)")
    finally:
        if args.keep:
            print(f"kept {out}")
        else:
            shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
