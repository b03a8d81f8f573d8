"""How much of the pipeline a Table 3 experiment costs once the backbone is cached, in one run.

    python bench/cached_rerun.py [--set key=value ...] [--keep]

Clones the committed HEAD into a temporary folder (an empty DVC cache, like a fresh clone), times
the full `dvc repro`, commits its lock file, then times `dvc exp run -S head.C=0.5` and prints
which stages ran, the SVM's F1 before/after, and the rerun's wall time as a fraction of the full
pipeline's. Goal: at most 3 %. `--set` applies `dvc exp run -S`-style overrides to the full run
first (e.g. a smaller `synthesize.n_train` for a quick check).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def sh(cwd: Path, *cmd: str) -> tuple[float, str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return elapsed, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone")
    args = parser.parse_args()
    top = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=True).stdout.strip())
    work = Path(tempfile.mkdtemp(prefix="cached-rerun-"))
    repo = work / "repo"
    dvc = [sys.executable, "-m", "dvc"]
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    try:
        sh(work, "git", "clone", "-q", str(top), str(repo))
        if args.set:
            params = yaml.safe_load((repo / "params.yaml").read_text())
            for item in args.set:
                key, value = item.split("=", 1)
                *sections, leaf = key.split(".")
                node = params
                for section in sections:
                    node = node[section]
                node[leaf] = yaml.safe_load(value)
            (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            sh(repo, *git, "commit", "-qam", "bench overrides")
        full, out = sh(repo, *dvc, "repro")
        full_stages = re.findall(r"Running stage '([^']+)'", out)
        sh(repo, *git, "add", "-A")
        sh(repo, *git, "commit", "-qm", "full run", "--allow-empty")
        before = json.loads((repo / "metrics/heads/svm.json").read_text())
        rerun, out = sh(repo, *dvc, "exp", "run", "-S", "head.C=0.5")
        rerun_stages = re.findall(r"Running stage '([^']+)'", out)
        after = json.loads((repo / "metrics/heads/svm.json").read_text())
        print(f"full pipeline (dvc repro, {len(full_stages)} stages): {full:.1f} s")
        print(f"cached rerun (dvc exp run -S head.C=0.5): {rerun:.1f} s, stages run: {', '.join(rerun_stages)}")
        print(f"SVM CV F1: {before['cv']['f1']:.4f} -> {after['cv']['f1']:.4f}"
              + (f", test F1: {before['test']['f1']:.4f} -> {after['test']['f1']:.4f}" if "test" in after else ""))
        print(f"fraction: {100 * rerun / full:.2f} % (goal <= 3 %)")
    finally:
        if args.keep:
            print(f"kept {repo}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
