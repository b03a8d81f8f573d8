"""End to end: the real `dvc repro`, `dvc exp run`, queue, push/pull, kill/resume, in temporary repos.

One micro pipeline (tests/pipeline.py: MICRO) is built per session and copied by the tests that
change it, so the whole file costs a few pipeline runs.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from pipeline import commit_all, copy_repo, dvc, env, make_repo, run, stages_run

from landslide_dvc.core.heads import HEADS

pytestmark = pytest.mark.slow

FOLD_STAGES = [f"train_fold@{k}" for k in range(5)]


def metrics_files(repo: Path) -> dict[str, str]:
    return {str(p.relative_to(repo)): p.read_text() for p in sorted((repo / "metrics").rglob("*.json"))}


def test_repro_normalize_in_a_fresh_repo_then_nothing_to_do(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    first = dvc(repo, "repro", "normalize")
    assert stages_run(first.stdout) == ["synthesize", "normalize"]
    for name in ("data/normalized/train.h5", "data/normalized/test.h5", "data/answers/test_labels.csv"):
        assert (repo / name).is_file()
    again = dvc(repo, "repro", "normalize")
    assert stages_run(again.stdout) == []
    assert "didn't change, skipping" in again.stdout


def test_full_pipeline_outputs(built: Path) -> None:
    for k in range(5):
        fold = json.loads((built / f"metrics/train_fold/{k}.json").read_text())
        assert fold["fold"] == k and 0.0 <= fold["best_val_f1"] <= 1.0 and fold["n_train_synthetic"] > 0
        assert (fold["weights_source"], fold["weights_sha256"]) == ("none", "")  # the demo starts from random weights
        assert (built / f"dvclive/train_fold/{k}/plots/metrics/val/f1.tsv").is_file()
        assert (built / f"models/resume/fold_{k}/complete.json").is_file()
        assert not (built / f"models/resume/fold_{k}/state.pt").exists()  # heavy state dropped when done
    for head in HEADS:
        metrics = json.loads((built / f"metrics/heads/{head}.json").read_text())
        assert metrics["n_oof"] == 80 and {"f1", "precision", "recall"} <= set(metrics["cv"])
        assert "test" in metrics  # the synthetic data carry answers
    with (built / "submissions/submission.csv").open() as fh:
        rows = list(csv.reader(fh))
    with (built / "data/synthetic/SampleSubmission.csv").open() as fh:
        sample = list(csv.reader(fh))
    assert rows[0] == sample[0] == ["ID", "Target"]
    assert [r[0] for r in rows[1:]] == [r[0] for r in sample[1:]]
    assert {r[1] for r in rows[1:]} <= {"0", "1"}
    for name in ("fig4.png",):
        assert (built / "plots/smote" / name).stat().st_size > 1000
    for name in ("umap_fc.png", "umap_svm.png", "occlusion.png"):
        assert (built / "plots/explain" / name).stat().st_size > 1000
    scored = json.loads((built / "metrics/map.json").read_text())  # the bundle's map of the scene, scored
    assert set(scored) >= {"threshold", "pixel", "objects"} and scored["objects"]["n_true"] > 0
    assert {"precision", "recall", "f1", "iou"} <= set(scored["pixel"]) and scored["pixel"]["coverage"] > 0.5
    assert (built / "maps/scene.tif").stat().st_size > 1000 and (built / "plots/map/scene.png").stat().st_size > 1000
    bands = [r["band"] for r in json.loads((built / "plots/explain/occlusion.json").read_text())]
    assert bands[:4] == ["Red", "Green", "Blue", "NIR"] and "DDVV" in bands
    status = dvc(built, "status")
    assert "up to date" in status.stdout


def test_head_c_experiment_reruns_only_the_svm_head(built: Path, tmp_path: Path) -> None:
    repo = copy_repo(built, tmp_path / "repo")
    result = dvc(repo, "exp", "run", "-S", "head.C=0.5")
    ran = stages_run(result.stdout)
    # the bundle's svm too, and the scene's map made with it
    assert ran[0] == "fit_head@svm" and {"export", "submit", "map_scene", "summary"} <= set(ran[1:]) <= {
        "export", "submit", "map_scene", "score_map", "summary"}, result.stdout
    for stage in FOLD_STAGES + ["extract_embeddings", "fit_head@fc", "fit_head@lgbm", "fit_head@logreg", "explain"]:
        assert f"Stage '{stage}' didn't change, skipping" in result.stdout
    diff = dvc(repo, "metrics", "diff", "--json").stdout
    changed = json.loads(diff)
    assert "metrics/heads/svm.json" in changed  # the SVM's figures moved with C ...
    assert "metrics/heads/fc.json" not in changed and "metrics/heads/lgbm.json" not in changed  # ... nothing else
    assert not any(k.startswith("metrics/train_fold") for k in changed)
    # the README's `dvc exp show` line, in a 100-column terminal: the changed param and the headline figures
    readme = (REPO_ROOT / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith("dvc exp show --only-changed"))
    shown = run(repo, "env", "COLUMNS=100", sys.executable, "-m", "dvc", *shlex.split(line)[1:], "--no-pager").stdout
    table = [row for row in shown.splitlines() if row.strip()]
    assert all(len(row) <= 100 for row in table), shown
    header = table[1]
    for column in ("Experiment", "cv_f1", "test_f1", "map_pixel_f1", "map_obj_recall", "head.C"):
        assert column in header, shown
    assert "…" not in shown, shown  # nothing cut
    workspace = next(row for row in table if row.strip().startswith("workspace"))
    assert workspace.split()[-1] == "0.5", shown


def test_queue_two_table3_rows_reuses_the_backbone(built: Path, tmp_path: Path) -> None:
    repo = copy_repo(built, tmp_path / "repo")
    module = [sys.executable, "-m", "landslide_dvc.experiments"]
    run(repo, *module, "queue", "table3", "--only", "t3-svm-c1,t3-svm-c0.5")
    dvc(repo, "queue", "start", "-j", "1")
    deadline = time.time() + 900
    while True:
        status = dvc(repo, "queue", "status").stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        assert time.time() < deadline, status
        time.sleep(3)
    assert status.count("Success") == 2, status
    for name in ("t3-svm-c1", "t3-svm-c0.5"):
        log = dvc(repo, "queue", "logs", name).stdout
        assert "Running stage 'fit_head@svm'" in log
        assert "Running stage 'train_fold" not in log and "Running stage 'extract_embeddings'" not in log, log
    report = run(repo, *module, "report", "table3", "--csv", str(tmp_path / "t3.csv")).stdout
    with (tmp_path / "t3.csv").open() as fh:
        rows = {r["Experiment"]: r for r in csv.DictReader(fh)}
    assert rows["t3-svm-c1"]["Status"] == "ok" and rows["t3-svm-c1"]["C"] == "1.0"
    assert rows["t3-svm-c0.5"]["Status"] == "ok" and rows["t3-svm-c0.5"]["C"] == "0.5"
    assert rows["t3-svm-c1"]["Test F1"] != "-" and rows["t3-svm-c1"]["Paper Test F1"] == "0.8840"
    assert rows["t3-fc"]["Status"] == "missing" and rows["t3-svm-c0.1"]["Status"] == "missing"
    assert "| t3-svm-c0.5 |" in report


def test_second_full_run_gives_identical_metrics(built: Path, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    dvc(repo, "repro")
    assert metrics_files(repo) == metrics_files(built)
    assert (repo / "submissions/submission.csv").read_bytes() == (built / "submissions/submission.csv").read_bytes()


def test_push_clone_pull_then_nothing_to_do(built: Path, tmp_path: Path) -> None:
    repo = copy_repo(built, tmp_path / "repo")
    remote = tmp_path / "remote"
    dvc(repo, "remote", "add", "-d", "storage", str(remote))
    commit_all(repo, "remote")
    dvc(repo, "push")
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(repo), str(clone))
    dvc(clone, "pull")
    assert "up to date" in dvc(clone, "status").stdout
    again = dvc(clone, "repro")
    assert stages_run(again.stdout) == []
    assert (clone / "models/fold_3.pt").read_bytes() == (built / "models/fold_3.pt").read_bytes()


def test_killed_training_resumes_to_the_same_result(built: Path, tmp_path: Path) -> None:
    repo = copy_repo(built, tmp_path / "repo")
    resume = repo / "models/resume/fold_1"
    shutil.rmtree(resume, ignore_errors=True)
    for name in ("models/fold_1.pt", "data/oof/fold_1.h5", "metrics/train_fold/1.json"):  # DVC must rerun
        (repo / name).unlink()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "train_fold@1"], cwd=repo, env=env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.time() + 300
    while not (resume / "state.pt").exists():  # the first epoch's checkpoint
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-epoch 2: no chance to clean up
    proc.wait()
    assert not (repo / "models/fold_1.pt").exists() and not (repo / "metrics/train_fold/1.json").exists()
    result = dvc(repo, "repro", "train_fold@1")
    assert "resuming after epoch" in result.stdout + result.stderr
    assert stages_run(result.stdout) == ["train_fold@1"]
    assert (repo / "metrics/train_fold/1.json").read_text() == (built / "metrics/train_fold/1.json").read_text()
    assert (repo / "models/fold_1.pt").read_bytes() == (built / "models/fold_1.pt").read_bytes()
    assert not [p for p in repo.rglob("*.partial-*")]  # no temporary file survives
    status = dvc(repo, "status")
    assert "up to date" in status.stdout, status.stdout
