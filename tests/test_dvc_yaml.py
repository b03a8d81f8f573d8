"""dvc.yaml and l4s/dvc.yaml are what tools/dvc_yaml.py writes from tools/pipelines.yaml, and they declare
the package modules each stage's results depend on, so DVC reruns a stage when its code changes (and only then)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import dvc_yaml  # noqa: E402  (tools/ is not a package)
from dvc_yaml import EVERY_STAGE, PACKAGE, PLUMBING, landslide_imports, module_closure  # noqa: E402

STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
# The Landslide4Sense pipeline runs in l4s/: its deps name the code as ../stages and ../src.
L4S_STAGES = yaml.safe_load((ROOT / "l4s" / "dvc.yaml").read_text())["stages"]


def declared_modules(deps: list[str], prefix: str) -> set[str]:
    return {
        Path(d[len(prefix):]).with_suffix("").as_posix()
        for d in deps
        if str(d).startswith(prefix) and not str(d).endswith("__init__.py")
    }


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_declares_every_module_it_runs(stage: str) -> None:
    body = STAGES[stage].get("do", STAGES[stage])
    script = ROOT / "stages" / f"{stage}.py"
    assert f"stages/{stage}.py" in body["deps"]
    used = module_closure(landslide_imports(script)) - PLUMBING
    declared = declared_modules(body["deps"], "src/landslide_dvc/")
    assert used - declared == set(), f"{stage}: add these to its deps in dvc.yaml"
    assert declared - used == set(), f"{stage}: declares modules it never imports"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_code_lives_in_the_pipeline_module_of_its_name(stage: str) -> None:
    # a newcomer finds a stage's code by its stage name: stages/<stage>.py -> pipeline/<stage>.py
    assert (PACKAGE / "pipeline" / f"{stage}.py").is_file()
    assert f"pipeline/{stage}" in landslide_imports(ROOT / "stages" / f"{stage}.py")


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
    declared = declared_modules(body["deps"], "../src/landslide_dvc/")
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


def test_layer_packages_hold_no_code() -> None:
    # `import landslide_dvc.core.x` runs core/__init__.py: it stays a docstring, so no stage needs it as a dep
    for package in ("core", "formats", "pipeline", "serve"):
        tree = ast.parse((PACKAGE / package / "__init__.py").read_text())
        assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) for node in tree.body), package


def test_closure_sees_function_level_imports() -> None:
    # train_fold imports the HDF5 readers inside its entry function; a module-level-only scan would miss them
    assert "pipeline/h5data" in module_closure({"pipeline/train_fold"})


@pytest.mark.parametrize(("pipeline", "stages"), [("dvc.yaml", STAGES), ("l4s/dvc.yaml", L4S_STAGES)])
def test_fit_head_runs_every_registered_head_with_its_params(pipeline: str, stages: dict) -> None:
    # the foreach is the registry's (core/heads.py): one entry per head, each declaring what it reads
    from landslide_dvc.core.heads import HEAD_KINDS

    entries = stages["fit_head"]["foreach"]
    assert list(entries) == list(HEAD_KINDS), f"{pipeline}: fit_head's foreach must list core.heads.HEAD_KINDS"
    shared = set(stages["fit_head"]["do"]["params"]) - {"${item.p1}", "${item.p2}", "${item.p3}"}
    for name, kind in HEAD_KINDS.items():
        declared = set(entries[name].values()) | shared
        assert set(kind.params) <= declared, f"{pipeline}: fit_head@{name} must declare {sorted(kind.params)}"
        others = {p for other in HEAD_KINDS.values() if other is not kind for p in other.params} - set(kind.params)
        assert not (set(entries[name].values()) & others), f"{pipeline}: fit_head@{name} declares another head's params"


@pytest.mark.parametrize("pipeline", ["zindi", "l4s"])
def test_the_committed_pipelines_are_what_the_description_generates(pipeline: str) -> None:
    description = dvc_yaml.load_description()
    path = ROOT / description["pipelines"][pipeline]["file"]
    assert path.read_text() == dvc_yaml.render(description, pipeline), (
        f"{path.relative_to(ROOT)} differs from tools/pipelines.yaml: run `python tools/dvc_yaml.py` (edit the description, not the file)"
    )


def test_a_head_with_a_fourth_param_gets_a_fourth_foreach_key(monkeypatch: pytest.MonkeyPatch) -> None:
    # adding a head is a registry entry: the generated fit_head foreach and params follow it
    from dataclasses import replace

    from landslide_dvc.core import heads

    wide = replace(heads.HEAD_KINDS["svm"], name="wide", params=("head.kernel", "head.C", "head.gamma", "head.seed"))
    monkeypatch.setitem(heads.HEAD_KINDS, "wide", wide)
    stages, _ = dvc_yaml.pipeline_stages(dvc_yaml.load_description(), "zindi")
    fit_head = stages["fit_head"]
    assert fit_head["foreach"]["wide"] == {"p1": "head.kernel", "p2": "head.C", "p3": "head.gamma", "p4": "head.seed"}
    assert fit_head["foreach"]["fc"] == {f"p{k}": "head.threshold" for k in range(1, 5)}
    assert fit_head["do"]["params"][-1] == "${item.p4}"


def test_fold_lists_follow_the_params_files_fold_ids() -> None:
    assert dvc_yaml.expand_folds(["a", "m/fold_{fold}.pt"], [0, 2]) == ["a", "m/fold_0.pt", "m/fold_2.pt"]
    assert dvc_yaml.expand_folds({"y": {"d/{fold}/f1.tsv": "f1"}}, [1]) == {"y": {"d/1/f1.tsv": "f1"}}
