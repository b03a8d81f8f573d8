"""The `landslide-dvc` command: `landslide-dvc experiments` is `python -m landslide_dvc.experiments`."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT

from landslide_dvc.cli import main


def test_experiments_subcommand_and_module_entry_agree(capsys) -> None:  # noqa: ANN001
    module = subprocess.run(
        [sys.executable, "-m", "landslide_dvc.experiments", "flags", "paper"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert module.returncode == 0 and "-S model.backbone=tf_efficientnetv2_l" in module.stdout
    command = subprocess.run(
        [sys.executable, "-m", "landslide_dvc", "experiments", "flags", "paper"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert command.returncode == 0 and command.stdout == module.stdout


def test_experiments_errors_keep_their_exit_code(capsys, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(REPO_ROOT)
    assert main(["experiments", "flags", "no_such_preset"]) == 1
    assert "experiments: error:" in capsys.readouterr().err


def test_the_command_and_package_cannot_collide_with_pypis_landslide() -> None:
    # PyPI's `landslide` (an HTML5 slideshow tool) installs a top-level `landslide` package and a
    # `landslide` script: this distribution installs neither.
    from importlib import metadata

    scripts = {ep.name: ep.value for ep in metadata.distribution("landslide-dvc").entry_points if ep.group == "console_scripts"}
    assert scripts == {"landslide-dvc": "landslide_dvc.cli:main"}
    text = (REPO_ROOT / "pyproject.toml").read_text()
    assert 'landslide-dvc = "landslide_dvc.cli:main"' in text and "\nlandslide = " not in text
    packages = sorted(p.parent.name for p in (REPO_ROOT / "src").glob("*/__init__.py"))
    assert packages == ["landslide_dvc"]
