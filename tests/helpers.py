"""Running stage scripts in-process (fast) the way DVC runs them: from the repository root."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT


def run_stage_script(
    name: str, cwd: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """Run stages/<name>.py as __main__ in ``cwd``; return (exit code, stderr)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [f"stages/{name}.py", *args])
    capsys.readouterr()
    code = 0
    try:
        runpy.run_path(str(REPO_ROOT / "stages" / f"{name}.py"), run_name="__main__")
    except SystemExit as exc:
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def write_params(path: Path, **sections: dict) -> dict:
    """params.yaml = the repository's params.yaml with some sections/keys replaced."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(params.get(section), dict):
            params[section] = {**params[section], **values}
        else:
            params[section] = values
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
