"""Benchmark: generate the full challenge-size synthetic dataset (7,147 train / 5,398 test rows).

Writes into a temporary folder (deleted afterwards unless --keep) and prints the wall time of
``write_dataset`` (generation and float64 .npy/.csv writing: ~4.9 GB, like the real archive),
images/s, MB/s and the CPU time of all its processes (a figure other jobs on the machine do not
inflate). Goal: < 60 s wall on 2 cores. Measured on the 2-core dev machine: see docs/synthetic.md.

    python bench/synthesize_full.py [--n-train 7147] [--n-test 5398] [--workers N] [--keep]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from landslide_dvc.synthetic.stand_in import SynthesizeParams, default_workers, write_dataset


def _folder_bytes(root: Path) -> int:
    return sum(entry.stat().st_size for entry in root.rglob("*") if entry.is_file())


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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
    n = params.n_train + params.n_test - int(params.duplicate_test_id)  # .npy files
    print(f"generating {params.n_train} train + {params.n_test} test rows ({n} patches) into {out} "
          f"with {workers} worker(s) on {os.cpu_count()} CPU(s)", flush=True)
    try:
        start, cpu_start = time.perf_counter(), _cpu_seconds()
        write_dataset(out, params, workers=workers)
        wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
        size = _folder_bytes(out)
        print(f"wall time      {wall:8.1f} s  (goal < 60 s)")
        print(f"cpu time       {cpu:8.1f} s  ({cpu / wall:.2f} cores busy on average)")
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
