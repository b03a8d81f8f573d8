"""dvc.yaml declares the package modules each stage's results depend on, so DVC reruns a stage
when its code changes (and only then)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "landslide"
# Plumbing that shapes error messages and file handling, never results (see dvc.yaml's header).
PLUMBING = {"cli", "errors", "io", "params", "paths"}
# What every stage's bytes depend on besides its own code: the exact package versions and the
# CPU code-path pins that importing the package sets (README, Reliability).
EVERY_STAGE = ["requirements.lock", "src/landslide/__init__.py"]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
# The Landslide4Sense pipeline runs in l4s/: its deps name the code as ../stages and ../src.
L4S_STAGES = yaml.safe_load((ROOT / "l4s" / "dvc.yaml").read_text())["stages"]


def landslide_imports(path: Path) -> set[str]:
    """Package modules that a file imports, at module level or inside functions."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "landslide":
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("landslide.")}
    return {m for m in found if (PACKAGE / f"{m}.py").is_file()}


def module_closure(modules: set[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += landslide_imports(PACKAGE / f"{module}.py")
    return seen


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_declares_every_module_it_runs(stage: str) -> None:
    body = STAGES[stage].get("do", STAGES[stage])
    script = ROOT / "stages" / f"{stage}.py"
    assert f"stages/{stage}.py" in body["deps"]
    used = module_closure(landslide_imports(script)) - PLUMBING
    declared = {Path(d).stem for d in body["deps"] if str(d).startswith("src/landslide/")} - {"__init__"}
    assert used - declared == set(), f"{stage}: add these to its deps in dvc.yaml"
    assert declared - used == set(), f"{stage}: declares modules it never imports"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_depends_on_the_lock_and_the_cpu_pins(stage: str) -> None:
    # a lock refresh or a changed pin must rerun every stage, so that dvc.lock shows its effect
    deps = STAGES[stage].get("do", STAGES[stage])["deps"]
    assert [d for d in EVERY_STAGE if d not in deps] == [], f"{stage}: add these to its deps in dvc.yaml"
    assert all((ROOT / d).is_file() for d in EVERY_STAGE)


@pytest.mark.parametrize("stage", sorted(L4S_STAGES))
def test_l4s_stage_depends_on_the_lock_and_the_cpu_pins(stage: str) -> None:
    deps = L4S_STAGES[stage].get("do", L4S_STAGES[stage])["deps"]
    missing = [d for d in EVERY_STAGE if f"../{d}" not in deps]
    assert missing == [], f"l4s/dvc.yaml {stage}: add these (as ../...) to its deps"


@pytest.mark.parametrize("stage", sorted(L4S_STAGES))
def test_l4s_stage_declares_every_module_it_runs(stage: str) -> None:
    body = L4S_STAGES[stage].get("do", L4S_STAGES[stage])
    script_name = re.search(r"python \.\./stages/(\w+)\.py", body["cmd"]).group(1)
    assert f"../stages/{script_name}.py" in body["deps"]
    used = module_closure(landslide_imports(ROOT / "stages" / f"{script_name}.py")) - PLUMBING
    declared = {Path(d).stem for d in body["deps"] if str(d).startswith("../src/landslide/")} - {"__init__"}
    assert used - declared == set(), f"l4s/dvc.yaml {stage}: add these to its deps"
    assert declared - used == set(), f"l4s/dvc.yaml {stage}: declares modules it never imports"
    for dep in body["deps"]:
        if str(dep).startswith("../"):
            assert (ROOT / "l4s" / dep).resolve().exists(), f"l4s/dvc.yaml {stage}: {dep} does not exist"


def test_l4s_params_cover_every_declared_section() -> None:
    params = yaml.safe_load((ROOT / "l4s" / "params.yaml").read_text())
    for name, stage in L4S_STAGES.items():
        for key in stage.get("do", stage).get("params", []):
            if "${" in str(key):
                continue
            section, *rest = str(key).split(".")
            assert section in params, f"l4s/dvc.yaml {name} reads {key}, missing in l4s/params.yaml"
            if rest:
                assert rest[0] in params[section], f"l4s/dvc.yaml {name} reads {key}, missing in l4s/params.yaml"


def test_closure_sees_function_level_imports() -> None:
    # train_fold imports h5data inside its entry function; a module-level-only scan would miss it
    assert "h5data" in module_closure({"train"})
