"""Temporary git + DVC repositories holding this project with a micro configuration."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO_ROOT

PROJECT_FILES = ["dvc.yaml", "params.yaml", "requirements.lock", "stages", "src/landslide_dvc", "experiments", "presets", ".dvcignore", ".gitignore"]

# Small enough that the whole pipeline runs in about a minute on 2 cores, big enough that every
# fold has landslides for SMOTE's neighbours and the heads see both classes.
MICRO = {
    "synthesize": {"n_train": 80, "n_test": 30},
    "smote": {"k": 2, "n_syn": 2},
    "model": {"backbone": "test_efficientnet", "dim": 32},
    "train": {"epochs": 2, "batch_size": 16, "eval_batch_size": 128},
    "embed": {"batch_size": 128},
    "head": {"lgbm": {"n_estimators": 20, "learning_rate": 0.1, "num_leaves": 7, "min_child_samples": 3,
                      "colsample_bytree": 0.5, "n_jobs": 1}},
    "explain": {"umap_neighbors": 5, "max_points": 200, "occlusion_max_images": 3},
    "scene": {"size": 192},
}


def env() -> dict[str, str]:
    """The environment DVC stages see: this interpreter first on PATH, offline, with a git identity."""
    out = dict(os.environ)
    out["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{out.get('PATH', '')}"
    out.update(
        DVC_NO_ANALYTICS="1",
        HF_HUB_OFFLINE="1",
        GIT_AUTHOR_NAME="test",
        GIT_AUTHOR_EMAIL="test@example.com",
        GIT_COMMITTER_NAME="test",
        GIT_COMMITTER_EMAIL="test@example.com",
    )
    return out


def run(cwd: Path, *cmd: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def dvc(cwd: Path, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return run(cwd, sys.executable, "-m", "dvc", *args, check=check, timeout=timeout)


def merge(params: dict, overrides: dict) -> dict:
    out = dict(params)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "lgbm":
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def make_repo(dest: Path, overrides: dict | None = None, *, micro: bool = True) -> Path:
    """Copy the project into ``dest``, apply the micro config (+ overrides), git/dvc init, commit."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = REPO_ROOT / name
        target = dest / name
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    if micro:
        params = merge(params, MICRO)
    params = merge(params, overrides or {})
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(dest, "git", "init", "-q", "-b", "main")
    run(dest, "git", "config", "user.name", "test")
    run(dest, "git", "config", "user.email", "test@example.com")
    dvc(dest, "init", "-q")
    shutil.copy2(REPO_ROOT / ".dvc" / "config", dest / ".dvc" / "config")
    run(dest, "git", "add", "-A")
    run(dest, "git", "commit", "-qm", "project")
    return dest


def commit_all(repo: Path, message: str) -> None:
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-qm", message)


def stages_run(output: str) -> list[str]:
    """Names of the stages DVC ran, from its output."""
    return re.findall(r"Running stage '([^']+)'", output)


def copy_repo(src: Path, dest: Path) -> Path:
    """An independent copy of a built repository (git history and DVC cache included)."""
    shutil.copytree(src, dest, symlinks=True)
    return dest
