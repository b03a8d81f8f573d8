"""The `landslide` command: `landslide experiments` is `python -m landslide.experiments`."""

from __future__ import annotations

import subprocess
import sys

from conftest import REPO_ROOT

from landslide.console import main


def test_experiments_subcommand_and_module_entry_agree(capsys) -> None:  # noqa: ANN001
    module = subprocess.run(
        [sys.executable, "-m", "landslide.experiments", "flags", "paper"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert module.returncode == 0 and "-S model.backbone=tf_efficientnetv2_l" in module.stdout
    command = subprocess.run(
        [sys.executable, "-m", "landslide", "experiments", "flags", "paper"], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert command.returncode == 0 and command.stdout == module.stdout


def test_experiments_errors_keep_their_exit_code(capsys, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(REPO_ROOT)
    assert main(["experiments", "flags", "no_such_preset"]) == 1
    assert "experiments: error:" in capsys.readouterr().err


def test_the_console_script_is_declared() -> None:
    text = (REPO_ROOT / "pyproject.toml").read_text()
    assert 'landslide = "landslide.console:main"' in text
