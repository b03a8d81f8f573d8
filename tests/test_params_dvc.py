"""params.yaml as DVC writes it: values set with the real `dvc exp run -S` come back to the stages
with the type DVC meant (YAML 1.2), in every spelling a user may type, and the paper command of
docs/reproduce.md loads as typed params.

Only the cheap `synthesize` stage runs: `dvc exp run` writes every -S value into params.yaml
whatever the target, and the stages read the file with ``landslide_dvc.core.params``.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from pipeline import dvc, env, make_repo

from landslide_dvc.core.augment import AugmentParams
from landslide_dvc.core.inference import EmbedParams
from landslide_dvc.core.model import ModelParams
from landslide_dvc.core.params import get_section, load_params
from landslide_dvc.core.training import TrainParams
from landslide_dvc.experiments import load_preset
from landslide_dvc.pipeline.explain import ExplainParams
from landslide_dvc.pipeline.fit_head import HeadParams
from landslide_dvc.pipeline.map_scene import MapSceneParams
from landslide_dvc.pipeline.normalize import DataParams, FoldsParams, NormalizeParams
from landslide_dvc.pipeline.smote import SmoteParams
from landslide_dvc.pipeline.stack_scene import StackSceneParams
from landslide_dvc.pipeline.stats_baseline import StatsBaselineParams
from landslide_dvc.pipeline.submit import SubmitParams
from landslide_dvc.synthetic.products import ProductsParams
from landslide_dvc.synthetic.scenes import SceneParams
from landslide_dvc.synthetic.stand_in import SynthesizeParams

pytestmark = pytest.mark.slow

# Every section a stage reads, with the dataclass its stage parses it into.
SECTIONS = {
    "synthesize": SynthesizeParams,
    "data": DataParams,
    "normalize": NormalizeParams,
    "folds": FoldsParams,
    "smote": SmoteParams,
    "model": ModelParams,
    "augment": AugmentParams,
    "train": TrainParams,
    "embed": EmbedParams,
    "head": HeadParams,
    "stats_baseline": StatsBaselineParams,
    "submit": SubmitParams,
    "explain": ExplainParams,
    "scene": SceneParams,
    "map_scene": MapSceneParams,
    "products": ProductsParams,
    "stack_scene": StackSceneParams,
}

# (key, what the user types after `-S key=`, the value and type the stage must see)
SPELLINGS = [
    ("train.min_lr", "1e-06", 1e-06),  # a string under YAML 1.1 (PyYAML): the bug of issue 13
    ("train.lr", "1.0e-6", 1e-06),
    ("smote.alpha", ".5", 0.5),
    ("train.eval_every", "+1", 1),
    ("model.pretrained", "true", True),
    ("model.checkpoint", "null", None),
]


def dvc_params(repo: Path) -> dict:
    """params.yaml as DVC itself reads it (the workspace row of `dvc exp show`)."""
    shown = json.loads(dvc(repo, "exp", "show", "--json").stdout)
    workspace = next(row for row in shown if row["rev"] == "workspace")
    return workspace["data"]["params"]["params.yaml"]["data"]


def lookup(mapping: dict, dotted: str):
    for part in dotted.split("."):
        mapping = mapping[part]
    return mapping


def stage_view(repo: Path) -> dict[str, object]:
    """Every section parsed into its dataclass, as the stages do (from the repository root)."""
    params = load_params(repo / "params.yaml")
    return {name: get_section(params, cls, name) for name, cls in SECTIONS.items()}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    # start from values that differ from the ones set below, so a write that DVC skipped would show
    return make_repo(
        tmp_path / "repo",
        {
            "model": {"checkpoint": "weights.safetensors", "pretrained": False},
            "smote": {"alpha": 2.0},
            "train": {"eval_every": 2, "lr": 0.002},
        },
    )


def test_dvc_exp_run_values_in_every_yaml_spelling_reach_the_stage_typed(repo: Path) -> None:
    sets = [arg for key, typed, _ in SPELLINGS for arg in ("-S", f"{key}={typed}")]
    result = dvc(repo, "exp", "run", "-n", "spellings", *sets, "synthesize")
    assert "Running stage 'synthesize'" in result.stdout
    written = dvc_params(repo)
    sections = stage_view(repo)
    for key, typed, expected in SPELLINGS:
        section, field = key.split(".", 1)
        seen = getattr(sections[section], field)
        meant = lookup(written, key)
        assert meant == expected and type(meant) is type(expected), (key, typed, meant)
        assert seen == meant and type(seen) is type(meant), (key, typed, seen, meant)


def docs_paper_command() -> str:
    """The `dvc exp run -n paper $(...)` line of docs/reproduce.md, exactly as a user copies it."""
    text = (REPO_ROOT / "docs" / "reproduce.md").read_text()
    match = re.search(r"^dvc exp run -n paper \$\(python -m landslide_dvc\.experiments flags paper\).*$", text, re.M)
    assert match, "docs/reproduce.md lost its paper command"
    return match.group(0)


def test_docs_paper_command_loads_the_preset_with_its_types(repo: Path) -> None:
    command = docs_paper_command()
    # the shell expands $(...) as the user's would; only the cheap stage runs
    result = subprocess.run(
        ["bash", "-c", f"{command} synthesize"], cwd=repo, env=env(), capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    sections = stage_view(repo)
    preset = load_preset("paper", REPO_ROOT)
    assert preset["train.min_lr"] == 1e-06  # the value behind the report of issue 13
    for key, value in preset.items():
        section, field = key.split(".", 1)
        seen = getattr(sections[section], field)
        assert seen == value and type(seen) is type(value), (key, seen, value)
    data_dir = re.search(r"-S data\.dir=(\S+)", command)
    if data_dir:
        assert sections["data"].dir == data_dir.group(1)
