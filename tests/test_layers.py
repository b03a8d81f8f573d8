"""The package's layers, as import-linter contracts in pyproject.toml (docs/development.md).

serve and the dataset formats import only core; the pipeline stages import core and formats.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` on the package under ``root``/src with ``root``'s pyproject.toml."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, capture_output=True, text=True, timeout=300,
        env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(root / "src")},
    )


def test_the_layer_contracts_hold() -> None:
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout


def test_serving_that_reaches_into_a_stage_breaks_a_contract(tmp_path: Path) -> None:
    shutil.copy2(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(REPO_ROOT / "src" / "landslide_dvc", tmp_path / "src" / "landslide_dvc",
                    ignore=shutil.ignore_patterns("__pycache__"))
    predict = tmp_path / "src" / "landslide_dvc" / "serve" / "predict.py"
    predict.write_text(predict.read_text() + "\nfrom landslide_dvc.pipeline.fit_head import run_fit_head  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "landslide_dvc.serve.predict -> landslide_dvc.pipeline.fit_head" in result.stdout
    assert "serve imports only core BROKEN" in result.stdout
