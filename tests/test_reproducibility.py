"""Same bytes on another machine: the data stages do not depend on threads or cores, the CPU pins
take effect before numpy and torch load, and requirements.lock pins every package the code imports.

The fresh-clone comparison against the committed dvc.lock and metrics runs in `.ci/run`.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from pipeline import env, make_repo

import landslide_dvc

LOCK = REPO_ROOT / "requirements.lock"
PACKAGE = REPO_ROOT / "src" / "landslide_dvc"
STAGE_SCRIPTS = sorted((REPO_ROOT / "stages").glob("*.py"))
PIN_NAMES = sorted(landslide_dvc.cpu_pins())


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions() -> dict[str, str]:
    return {
        normalized(name): version for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", LOCK.read_text(), re.M)
    }


def without_pins() -> dict[str, str]:
    """The test environment less every pin (and less LANDSLIDE_PIN_CPU), as a new shell has it."""
    out = env()
    for name in [*PIN_NAMES, "LANDSLIDE_PIN_CPU"]:
        out.pop(name, None)
    return out


def python(code: str, environment: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, *args], env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


# ------------------------------------------------------------------------------------------
# The CPU pins
# ------------------------------------------------------------------------------------------
PINNED_RUNTIME = """
import json, os
import landslide_dvc
import numpy, torch
from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
print(json.dumps({
    "env": {name: os.environ.get(name) for name in landslide_dvc.cpu_pins()},
    "numpy_avx512_active": [t for t in __cpu_dispatch__ if t != "X86_V3" and __cpu_features__.get(t)],
    "torch_capability": torch.backends.cpu.get_cpu_capability(),
}))
"""


def test_importing_landslide_pins_numpy_and_torch_to_avx2() -> None:
    seen = json.loads(python(PINNED_RUNTIME, without_pins()))
    assert seen["env"] == landslide_dvc.cpu_pins()
    # numpy dispatches none of its AVX-512 targets and ATen runs its AVX2 kernels, whatever the CPU
    assert seen["numpy_avx512_active"] == []
    assert seen["torch_capability"] in {"AVX2", "DEFAULT", "NO AVX"}


def test_numpy_knows_every_pinned_target() -> None:
    # a target numpy does not dispatch would be ignored with a warning: the pin would do nothing
    dispatch = python(
        "from numpy._core._multiarray_umath import __cpu_dispatch__; print(*__cpu_dispatch__)", without_pins()
    )
    assert set(landslide_dvc.numpy_avx512_targets().split()) <= set(dispatch.split())
    assert "X86_V3" in dispatch.split()  # the AVX2 level the pins leave numpy on


def test_user_settings_win_and_the_pins_can_be_switched_off() -> None:
    probe = "import json, os, landslide_dvc; print(json.dumps({n: os.environ.get(n) for n in landslide_dvc.cpu_pins()}))"
    mine = json.loads(python(probe, {**without_pins(), "ATEN_CPU_CAPABILITY": "default"}))
    assert mine["ATEN_CPU_CAPABILITY"] == "default"
    assert mine["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    off = json.loads(python(probe, {**without_pins(), "LANDSLIDE_PIN_CPU": "0"}))
    assert set(off.values()) == {None}


def test_no_pins_without_avx2(monkeypatch) -> None:
    # an AVX2 cap means nothing there, and OpenBLAS forced to Haswell kernels would fault
    for name in PIN_NAMES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(landslide_dvc, "cpu_has_avx2", lambda: False)
    landslide_dvc.pin_cpu_code_paths()
    assert [name for name in PIN_NAMES if name in os.environ] == []
    monkeypatch.setattr(landslide_dvc, "cpu_has_avx2", lambda: True)
    landslide_dvc.pin_cpu_code_paths()
    assert {name: os.environ[name] for name in PIN_NAMES} == landslide_dvc.cpu_pins()


STDLIB = set(sys.stdlib_module_names) | {"__future__"}


def first_non_stdlib_import(path: Path) -> str | None:
    """The top-level package of the first module-level import that is not the standard library's."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names = [a.name.split(".")[0] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module.split(".")[0]]
        else:
            continue
        others = [n for n in names if n not in STDLIB]
        if others:
            return others[0]
    return None


@pytest.mark.parametrize("script", STAGE_SCRIPTS, ids=lambda p: p.stem)
def test_every_stage_imports_landslide_before_anything_else(script: Path) -> None:
    # the pins are read once, when numpy/torch load: an import of either before landslide's
    # would run the stage on the machine's own code paths
    assert first_non_stdlib_import(script) == "landslide_dvc"


IMPORT_PROBE = """
import importlib.abc, importlib.util, json, os, sys
names = json.loads(sys.argv[2])
seen = {}

class Probe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name in ("numpy", "torch") and name not in seen:
            seen[name] = {n: os.environ.get(n) for n in names}
        return None

sys.meta_path.insert(0, Probe())
spec = importlib.util.spec_from_file_location("stage", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps(seen))
"""


@pytest.mark.parametrize("stage", ["synthesize", "train_fold"])
def test_numpy_and_torch_load_with_the_pins_in_place(stage: str) -> None:
    """A stage script's imports, run for real: the environment numpy and torch see as they load."""
    seen = json.loads(
        python(IMPORT_PROBE, without_pins(), str(REPO_ROOT / "stages" / f"{stage}.py"), json.dumps(PIN_NAMES))
    )
    assert "numpy" in seen
    assert all(environment == landslide_dvc.cpu_pins() for environment in seen.values()), seen


# ------------------------------------------------------------------------------------------
# The lock
# ------------------------------------------------------------------------------------------
def imported_top_level_modules() -> set[str]:
    """Top-level modules that the package and the stage scripts import (module level or inside functions)."""
    found: set[str] = set()
    for path in [*PACKAGE.rglob("*.py"), *STAGE_SCRIPTS]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - STDLIB - {"landslide_dvc"}


def test_the_lock_pins_every_distribution_the_code_imports() -> None:
    providers = metadata.packages_distributions()
    modules = imported_top_level_modules()
    assert {"numpy", "torch", "scipy", "numba", "timm", "sklearn"} <= modules  # the scan sees the imports
    missing_module = sorted(m for m in modules if m not in providers)
    assert missing_module == [], f"imported but not installed: {missing_module}"
    distributions = {normalized(d) for m in modules for d in providers[m]}
    locked = locked_versions()
    assert sorted(distributions - set(locked)) == [], "run `make lock` (docs/development.md)"
    # the tests run in the locked install (README, Quick start): same versions, same bytes
    installed = {d: metadata.version(d) for d in distributions}
    assert {d: v for d, v in installed.items() if locked[d] != v} == {}, (
        "this environment differs from requirements.lock: pip install -r requirements.lock"
    )


def test_the_lock_covers_the_declared_dependencies_and_states_its_date() -> None:
    locked = locked_versions()
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    lists = re.findall(r"^(?:dependencies|dev) = \[(.*?)\]", pyproject, re.M | re.S)
    names = {normalized(name) for block in lists for name in re.findall(r'"([A-Za-z0-9_.-]+)', block)}
    assert {"torch", "numpy", "dvc", "pytest"} <= names
    assert sorted(names - set(locked)) == []
    date = re.search(r"make lock LOCK_DATE=(\d{4}-\d{2}-\d{2})", LOCK.read_text())
    assert date, "requirements.lock was not written by `make lock`"
    assert f"lock of {date.group(1)}" in (REPO_ROOT / "README.md").read_text(), "the README names the lock's date"
    assert "--hash=sha256:" in LOCK.read_text()


# ------------------------------------------------------------------------------------------
# Data stages: the same bytes on 1 thread / 1 core as on 2
# ------------------------------------------------------------------------------------------
THREAD_VARIABLES = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"]


def run_data_stages(repo: Path, threads: int) -> dict[str, str]:
    """synthesize, normalize and smote on ``threads`` cores and threads; sha256 of every output."""
    cores = sorted(os.sched_getaffinity(0))[:threads]
    environment = {**env(), **dict.fromkeys(THREAD_VARIABLES, str(threads))}
    for stage in ("synthesize", "normalize", "smote"):
        result = subprocess.run(
            [sys.executable, f"stages/{stage}.py"],
            cwd=repo,
            env=environment,
            capture_output=True,
            text=True,
            timeout=600,
            preexec_fn=lambda: os.sched_setaffinity(0, cores),
        )
        assert result.returncode == 0, f"{stage}: {result.stderr[-3000:]}"
    outputs = [p for folder in ("data", "plots/smote") for p in sorted((repo / folder).rglob("*")) if p.is_file()]
    return {str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest() for p in outputs}


@pytest.mark.slow
@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 cores to compare 1 against 2")
def test_data_stages_give_the_same_bytes_on_one_and_two_threads(tmp_path: Path) -> None:
    one = run_data_stages(make_repo(tmp_path / "one"), threads=1)
    two = run_data_stages(make_repo(tmp_path / "two"), threads=2)
    assert {"data/normalized/train.h5", "data/smote/synthetic.h5", "data/synthetic/Train.csv"} <= set(one)
    assert {path for path in one if one[path] != two.get(path)} == set()


# ------------------------------------------------------------------------------------------
# Training: the bytes follow train.threads, not the machine's thread settings
# ------------------------------------------------------------------------------------------
TINY_TRAINING = """
import landslide_dvc
import dataclasses, sys
sys.path.insert(0, sys.argv[1])
import test_distributed as t
from landslide_dvc.pipeline.folds import fold_data
from landslide_dvc.core.training import train_fold

split = t.tiny_split()
params = dataclasses.replace(t.TRAIN, epochs=1, threads=int(sys.argv[2]))
print(t.digest(train_fold(fold_data(split, t.synthetic_for(split, 0), 0), t.MODEL, t.AUGMENT, params, 0, progress=False)))
"""


@pytest.mark.slow
def test_training_bytes_follow_train_threads_not_omp_num_threads() -> None:
    tests = str(REPO_ROOT / "tests")

    def digest(omp: str, threads: int) -> str:
        return python(TINY_TRAINING, {**without_pins(), "OMP_NUM_THREADS": omp}, tests, str(threads)).strip()

    two = digest("1", 2)
    assert digest("2", 2) == two  # OMP_NUM_THREADS is overridden by the parameter
    assert digest("2", 1) != two  # ... which does matter: sums split between threads round differently
