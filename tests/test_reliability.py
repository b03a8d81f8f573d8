"""Faults and bad input across the pipeline: one clear line, a non-zero exit, no partial outputs.

Stage scripts run in-process inside a copy of the session's micro pipeline (tests/pipeline.py),
after their outputs are removed the way DVC removes them before a run.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml
from helpers import files_under, run_stage_script
from pipeline import copy_repo, dvc, env

from landslide_dvc.core.errors import LandslideError
from landslide_dvc.core.heads import HEADS
from landslide_dvc.core.io import atomic_paths

SRC = Path(__file__).resolve().parents[1] / "src" / "landslide_dvc"

OUTPUTS = {
    "smote": ["data/smote/synthetic.h5", "plots/smote/fig4.png", "plots/smote/class_counts.json"],
    "train_fold": ["models/fold_3.pt", "data/oof/fold_3.h5", "metrics/train_fold/3.json"],
    "extract_embeddings": [f"data/embeddings/fold_{k}.h5" for k in range(5)],
    "fit_head": ["data/heads/svm.h5", "metrics/heads/svm.json", "plots/heads/svm/confusion.json", "plots/heads/svm/pr.json"],
    "submit": ["submissions/submission.csv", "metrics/submit.json"],
}
ARGS = {"train_fold": ["--fold", "3"], "fit_head": ["--head", "svm"]}


@pytest.fixture
def repo(built: Path, tmp_path: Path) -> Path:
    return copy_repo(built, tmp_path / "repo")


def fail_stage(repo: Path, stage: str, monkeypatch, capsys) -> str:
    """Remove the stage's outputs, run it, check the failure contract; return the error line."""
    for name in OUTPUTS[stage]:
        (repo / name).unlink()
    before = files_under(repo)
    code, err = run_stage_script(stage, repo, monkeypatch, capsys, *ARGS.get(stage, []))
    lines = err.strip().splitlines()
    assert code == 1, err
    assert len(lines) == 1 and lines[0].startswith(f"{stage}: error: "), err
    assert files_under(repo) == before  # nothing written, no temporary file left
    return lines[0]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


pytestmark = pytest.mark.slow


def test_truncated_checkpoint(repo: Path, monkeypatch, capsys) -> None:
    truncate(repo / "models/fold_2.pt")
    line = fail_stage(repo, "extract_embeddings", monkeypatch, capsys)
    assert "models/fold_2.pt is not a loadable checkpoint (truncated or corrupt)" in line


def test_pickle_bearing_checkpoint_is_refused(repo: Path, monkeypatch, capsys, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    checkpoint = torch.load(repo / "models/fold_1.pt", weights_only=True)
    checkpoint["meta"]["note"] = Payload()
    torch.save(checkpoint, repo / "models/fold_1.pt")
    line = fail_stage(repo, "extract_embeddings", monkeypatch, capsys)
    assert "models/fold_1.pt" in line and "unsafe pickle" in line
    assert not marker.exists()


def test_corrupt_embeddings(repo: Path, monkeypatch, capsys) -> None:
    truncate(repo / "data/embeddings/fold_1.h5")
    line = fail_stage(repo, "fit_head", monkeypatch, capsys)
    assert "data/embeddings/fold_1.h5 is not a readable HDF5 file" in line and "extract_embeddings" in line


def test_embeddings_with_nan(repo: Path, monkeypatch, capsys) -> None:
    with h5py.File(repo / "data/embeddings/fold_4.h5", "a") as h5:
        h5["val/features"][0, 0] = np.nan
    line = fail_stage(repo, "fit_head", monkeypatch, capsys)
    assert "data/embeddings/fold_4.h5: val embeddings contain NaN/Inf" in line


def test_truncated_hdf5_input(repo: Path, monkeypatch, capsys) -> None:
    truncate(repo / "data/normalized/train.h5")
    line = fail_stage(repo, "smote", monkeypatch, capsys)
    assert "data/normalized/train.h5 is not a readable HDF5 file" in line and "normalize" in line


def test_missing_hdf5_dataset(repo: Path, monkeypatch, capsys) -> None:
    with h5py.File(repo / "data/smote/synthetic.h5", "a") as h5:
        del h5["fold_3/lam"]
    line = fail_stage(repo, "train_fold", monkeypatch, capsys)
    assert "data/smote/synthetic.h5 is incomplete or has an unexpected layout" in line


def test_fold_without_landslides(repo: Path, monkeypatch, capsys) -> None:
    with h5py.File(repo / "data/normalized/train.h5", "a") as h5:
        labels = h5["labels"][()]
        labels[h5["fold"][()] == 3] = 0
        h5["labels"][...] = labels
    line = fail_stage(repo, "train_fold", monkeypatch, capsys)
    assert "fold 3 has no landslide images" in line


@pytest.mark.parametrize(
    ("stage", "change", "expected"),
    [
        ("train_fold", {"train": {"epochs": "ten"}}, "train.epochs='ten' has the wrong type; expected int"),
        ("train_fold", {"augment": {"mixup_alpha": None}}, "augment.mixup_alpha=None has the wrong type"),
        ("fit_head", {"head": {"Cc": 1.0}}, "unknown key 'head.Cc' in params.yaml"),
        ("fit_head", {"head": {"C": -0.5}}, "head.C=-0.5 must be > 0"),
        ("smote", {"smote": {"k": 500}}, "smote.k=500 needs at least 501 landslide images outside fold"),
        ("submit", {"submit": {"head": "knn"}}, "submit.head: unknown head 'knn'; use one of fc, svm, lgbm, logreg"),
    ],
)
def test_bad_params(repo: Path, monkeypatch, capsys, stage: str, change: dict, expected: str) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for section, values in change.items():
        params[section].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    line = fail_stage(repo, stage, monkeypatch, capsys)
    assert expected in line


def test_disk_full_while_writing(repo: Path, monkeypatch, capsys) -> None:
    real_write_text = Path.write_text

    def full_disk(self: Path, *args, **kwargs):
        if ".partial-" in self.name and "metrics" in str(self):
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    line = fail_stage(repo, "fit_head", monkeypatch, capsys)
    assert "no space left on device while writing data/heads/svm.h5, metrics/heads/svm.json" in line


def test_interrupt_mid_hdf5_write_leaves_nothing(repo: Path, monkeypatch, capsys) -> None:
    import landslide_dvc.pipeline.smote as smote

    real = smote.write_fold_group

    def interrupted(h5, fold, synthetic):
        real(h5, fold, synthetic)
        if fold == 2:  # three folds are in the file, two are not: Ctrl-C arrives now
            raise KeyboardInterrupt

    monkeypatch.setattr(smote, "write_fold_group", interrupted)
    for name in OUTPUTS["smote"]:
        (repo / name).unlink()
    before = files_under(repo)
    code, err = run_stage_script("smote", repo, monkeypatch, capsys)
    assert code == 130 and "interrupted" in err
    assert files_under(repo) == before


def test_sigint_during_training_then_resume(repo: Path) -> None:
    for name in OUTPUTS["train_fold"]:
        (repo / name).unlink()
    resume = repo / "models/resume/fold_3"
    for leftover in resume.iterdir():
        leftover.unlink()
    proc = subprocess.Popen(
        [sys.executable, "stages/train_fold.py", "--fold", "3"], cwd=repo, env=env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A shell running pytest in the background ignores SIGINT and its children inherit that;
        # Ctrl-C in a terminal is what this test stands for.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 300
    while not (resume / "state.pt").exists():
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err.strip().splitlines()[-1]
    assert not any((repo / name).exists() for name in OUTPUTS["train_fold"])
    assert not list(repo.rglob("*.partial-*"))
    result = dvc(repo, "repro", "train_fold@3")
    assert "resuming after epoch" in result.stderr + result.stdout
    assert dvc(repo, "status").stdout.strip().endswith("up to date.")


def test_atomic_paths_publish_all_or_nothing(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "sub" / "b.txt"
    with pytest.raises(KeyboardInterrupt), atomic_paths(a, b) as (ta, tb):
        ta.write_text("first")
        raise KeyboardInterrupt
    assert files_under(tmp_path) == []
    with pytest.raises(LandslideError, match="was not written"), atomic_paths(a, b) as (ta, tb):
        ta.write_text("only one of two")
    assert files_under(tmp_path) == []
    (tmp_path / ".a.txt.partial-99999").write_text("left by a killed run")
    with atomic_paths(a, b) as (ta, tb):
        ta.write_text("1")
        tb.write_text("2")
    assert files_under(tmp_path) == ["a.txt", "sub/b.txt"]  # and the stale partial was swept


def umask_modes() -> tuple[int, int]:
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask, 0o777 & ~mask


def test_atomic_outputs_get_the_umask_mode_whatever_their_writer_made(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    file_mode, folder_mode = umask_modes()
    with atomic_paths(tmp_path / "bundle", directories=True) as (staged,):
        (staged / "folds").mkdir(mode=0o700)
        save_file({"w": torch.zeros(2)}, str(staged / "folds" / "fold_0.safetensors"))  # safetensors writes 0600
        (staged / "manifest.json").write_text("{}")
    with atomic_paths(tmp_path / "weights.safetensors") as (staged,):
        save_file({"w": torch.zeros(2)}, str(staged))
    modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777 for p in [tmp_path / "bundle", *tmp_path.rglob("*")]}
    assert modes == {
        "bundle": folder_mode, "bundle/folds": folder_mode, "bundle/folds/fold_0.safetensors": file_mode,
        "bundle/manifest.json": file_mode, "weights.safetensors": file_mode,
    }


def test_output_os_errors_are_one_line_naming_the_path(tmp_path: Path) -> None:
    parent_is_a_file = tmp_path / "notes"
    parent_is_a_file.write_text("the user's\n")
    with pytest.raises(LandslideError, match=rf"cannot write {re.escape(str(parent_is_a_file / 'out.csv'))}: "):
        with atomic_paths(parent_is_a_file / "out.csv") as (staged,):
            staged.write_text("never")

    def refused(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    with pytest.raises(LandslideError, match=r"cannot write .*out\.csv: Permission denied .*make its folder writable"):
        with atomic_paths(tmp_path / "out.csv") as (staged,):
            refused(staged)
    with pytest.raises(FileNotFoundError):  # an input's problem inside the block is reported as it is
        with atomic_paths(tmp_path / "out.csv") as (staged,):
            (tmp_path / "missing_input.csv").read_text()
    assert files_under(tmp_path) == ["notes"]


def test_no_pickle_on_any_load_path() -> None:
    """Static guard: nothing in the package may load pickles or allow them."""
    forbidden = re.compile(r"allow_pickle\s*=\s*True|weights_only\s*=\s*False|pickle\.loads?\(|joblib|dill")
    sources = sorted(SRC.rglob("*.py"))
    assert len(sources) > 30  # every layer's modules are scanned
    offenders = [
        f"{path.relative_to(SRC)}:{n}" for path in sources for n, line in enumerate(path.read_text().splitlines(), 1)
        if forbidden.search(line)
    ]
    assert offenders == []
    uses_torch_load = [p for p in sources if "torch.load(" in p.read_text()]
    assert uses_torch_load  # checkpoints and resume states
    for path in uses_torch_load:
        calls = re.findall(r"torch\.load\([^)]*\)", path.read_text())
        assert calls and all("weights_only=True" in c for c in calls), path.name
    uses_np_load = [p for p in sources if "np.load(" in p.read_text()]
    assert uses_np_load  # the Zindi patches
    for path in uses_np_load:
        assert all("allow_pickle=False" in c for c in re.findall(r"np\.load\([^)]*\)", path.read_text())), path.name


def test_metrics_json_has_no_nan(built: Path) -> None:
    def refuse(constant: str) -> None:
        raise AssertionError(f"a metrics file holds {constant}")

    files = list((built / "metrics").rglob("*.json"))
    # five folds, every registered head, the submission, the per-band-statistics reference, the scene's
    # map scores and the summary
    assert len(files) == 5 + len(HEADS) + 1 + 1 + 1 + 1
    for path in files:
        json.loads(path.read_text(), parse_constant=refuse)
