"""Scaling out: one GPU per running experiment (cuda:auto lock files, tested on a fake device list),
and a table split between machines that share a git remote and a DVC remote."""

from __future__ import annotations

import csv
import dataclasses
import multiprocessing
import re
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import REPO_ROOT
from pipeline import commit_all, copy_repo, dvc, run

from landslide_dvc.core.devices import GpuLocks, select_device
from landslide_dvc.core.errors import ParamError
from landslide_dvc.core.params import parse_section
from landslide_dvc.core.training import TrainParams
from landslide_dvc.experiments import load_table, main, parse_shard, shard_rows

FAKE_GPUS = ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"]


@pytest.fixture
def fake_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[torch.device]:
    """torch.cuda reporting three GPUs (with UUIDs); lock files in a fresh folder; set_device recorded."""
    current: list[torch.device] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(FAKE_GPUS))
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(uuid=FAKE_GPUS[i][4:]))
    monkeypatch.setattr(torch.cuda, "set_device", current.append)
    monkeypatch.setenv("LANDSLIDE_GPU_LOCK_DIR", str(tmp_path / "locks"))
    return current


def _hold(folder: Path, gpu_ids: list[str], conn) -> None:
    locks = GpuLocks(folder)
    conn.send(locks.try_claim(gpu_ids))
    conn.recv()  # hold the claim until told (or killed)


def hold_in_other_process(folder: Path, gpu_ids: list[str]) -> tuple[multiprocessing.Process, int | None]:
    """Another process claiming a GPU (as another queued experiment would); returns it and what it got."""
    context = multiprocessing.get_context("fork")  # the test's modules already imported: starts in ms
    parent, child = context.Pipe()
    proc = context.Process(target=_hold, args=(folder, gpu_ids, child), daemon=True)
    proc.start()
    return proc, parent.recv()


def test_cuda_auto_skips_gpus_held_by_other_processes(fake_gpus: list[torch.device], tmp_path: Path) -> None:
    folder = tmp_path / "locks"
    other, got = hold_in_other_process(folder, FAKE_GPUS)
    try:
        assert got == 0
        device = select_device("cuda:auto", "train.device")
        assert device == torch.device("cuda", 1) and fake_gpus == [device]  # made current: no context on GPU 0
        assert (folder / "GPU-bbbb.lock").read_text().startswith("pid ")
        assert select_device("cuda:auto", "embed.device") == device  # this process keeps its GPU
        third, got = hold_in_other_process(folder, FAKE_GPUS)
        assert got == 2
        third.kill()
        third.join()
    finally:
        other.kill()  # SIGKILL: the kernel still drops its lock
        other.join()
    fresh = GpuLocks(folder)
    assert fresh.try_claim(FAKE_GPUS) == 0  # the killed holders' GPUs are free again ...
    assert fresh.try_claim(FAKE_GPUS[1:2]) is None  # ... this process's own claim is not


def test_cuda_auto_waits_for_a_free_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    holders = [GpuLocks(tmp_path) for _ in FAKE_GPUS]
    assert [h.try_claim(FAKE_GPUS) for h in holders] == [0, 1, 2]
    waiting = GpuLocks(tmp_path)
    with pytest.raises(ParamError, match=r"train.device=cuda:auto found all 3 GPUs taken for 0.2 s"):
        waiting.claim(FAKE_GPUS, "train.device", poll_s=0.05, wait_s=0.2)

    def finish_second_run() -> None:
        time.sleep(0.3)
        holders[1].held.pop("GPU-bbbb").close()

    threading.Thread(target=finish_second_run).start()
    assert waiting.claim(FAKE_GPUS, "train.device", poll_s=0.05) == 1
    err = capsys.readouterr().err
    assert err.count("all 3 GPUs are taken by other runs") == 2  # once per claim, not once per poll


def test_device_choices_on_a_fake_device_list(fake_gpus: list[torch.device], monkeypatch) -> None:
    assert select_device("auto", "train.device") == torch.device("cuda")  # today's choice, unchanged
    assert select_device("cpu", "train.device") == torch.device("cpu")
    assert select_device("cuda", "train.device", rank=1) == torch.device("cuda", 1)  # a DDP worker's GPU
    with pytest.raises(ParamError, match="rank 3 has no GPU of its own"):
        select_device("auto", "train.device", rank=3)
    assert fake_gpus == [torch.device("cuda", 1)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto", "train.device", rank=1) == torch.device("cpu")
    with pytest.raises(ParamError, match="explain.device=cuda:auto but no CUDA device is available"):
        select_device("cuda:auto", "explain.device")


def test_device_parameter_accepts_cuda_auto() -> None:
    from test_train import TRAIN

    base = dataclasses.asdict(TRAIN)
    assert parse_section({**base, "device": "cuda:auto"}, TrainParams, "train").device == "cuda:auto"
    with pytest.raises(ParamError, match="train.device='cuda:7' is not allowed"):
        parse_section({**base, "device": "cuda:7"}, TrainParams, "train")


# ------------------------------------------------------------------------------ shards of a table


def test_shards_partition_a_table() -> None:
    rows = load_table("table2", REPO_ROOT).rows
    for count in (1, 2, 3, 5, 10):
        shards = [shard_rows(rows, (index, count)) for index in range(1, count + 1)]
        names = [r.name for shard in shards for r in shard]
        assert sorted(names) == sorted(r.name for r in rows) and len(names) == len(rows)  # each row exactly once
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [r.name for r in shard_rows(rows, (2, 3))] == [rows[1].name, rows[4].name, rows[7].name]
    for bad in ("0/2", "3/2", "2", "a/b", "1/0"):
        with pytest.raises(ParamError, match="--shard .* must look like i/n"):
            parse_shard(bad)


def test_queue_dry_run_with_shard(capsys, monkeypatch) -> None:
    monkeypatch.chdir(REPO_ROOT)
    rows = [r.name for r in load_table("table3").rows]
    assert main(["queue", "table3", "--shard", "2/2", "--dry-run"]) == 0
    queued = [line.split(" -n ")[1].split()[0] for line in capsys.readouterr().out.strip().splitlines()]
    assert queued == rows[1::2]
    assert main(["queue", "table3", "--only", f"{rows[0]},{rows[3]},{rows[4]}", "--shard", "1/2", "--dry-run"]) == 0
    assert [line.split(" -n ")[1].split()[0] for line in capsys.readouterr().out.strip().splitlines()] == [rows[0], rows[4]]
    assert main(["queue", "table3", "--shard", "3/2", "--dry-run"]) == 1
    assert "--shard '3/2' must look like i/n" in capsys.readouterr().err


# --------------------------------------------------------- two machines, a git remote, a DVC remote

TINY_TABLE = {
    "title": "Tiny: the SVM's C",
    "head": "svm",
    "baseline": "tiny-c1",
    "columns": [{"header": "C", "key": "head.C"}],
    "rows": [
        {"name": "tiny-c1", "overrides": {"head.C": 1.0}},
        {"name": "tiny-c0.5", "overrides": {"head.C": 0.5}},
        {"name": "tiny-c0.25", "overrides": {"head.C": 0.25}},
    ],
}


def wait_for_queue(repo: Path, timeout: float = 900) -> str:
    deadline = time.time() + timeout
    while True:
        status = dvc(repo, "queue", "status").stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            return status
        assert time.time() < deadline, status
        time.sleep(3)


def report_rows(repo: Path, out: Path) -> dict[str, dict[str, str]]:
    run(repo, sys.executable, "-m", "landslide_dvc.experiments", "report", "tiny", "--csv", str(out))
    with out.open() as fh:
        return {row["Experiment"]: row for row in csv.DictReader(fh)}


@pytest.mark.slow
def test_two_machines_split_a_table_and_anyone_reports_it(built: Path, tmp_path: Path) -> None:
    origin = copy_repo(built, tmp_path / "origin")
    (origin / "experiments" / "tiny.yaml").write_text(yaml.safe_dump(TINY_TABLE, sort_keys=False))
    git_remote, dvc_remote = tmp_path / "project.git", tmp_path / "dvc-storage"
    run(tmp_path, "git", "init", "-q", "--bare", "-b", "main", str(git_remote))
    dvc(origin, "remote", "add", "-d", "storage", str(dvc_remote))
    commit_all(origin, "tiny table, DVC remote")
    run(origin, "git", "remote", "add", "origin", str(git_remote))
    run(origin, "git", "push", "-q", "origin", "main")
    dvc(origin, "push")

    machines = []
    for index in (1, 2):  # each machine: clone, pull the cache, queue its shard, run it
        machine = tmp_path / f"machine{index}"
        run(tmp_path, "git", "clone", "-q", str(git_remote), str(machine))
        dvc(machine, "pull")
        run(machine, sys.executable, "-m", "landslide_dvc.experiments", "queue", "tiny", "--shard", f"{index}/2")
        dvc(machine, "queue", "start", "-j", "1")
        machines.append(machine)
    for machine in machines:
        assert "Failed" not in wait_for_queue(machine)
        dvc(machine, "exp", "push", "origin")  # experiment commits to git, their outputs to the DVC remote

    own = [report_rows(m, tmp_path / f"machine{i}.csv") for i, m in enumerate(machines, 1)]
    assert [n for n, r in own[0].items() if r["Status"] == "ok"] == ["tiny-c1", "tiny-c0.25"]  # shard 1/2
    assert [n for n, r in own[1].items() if r["Status"] == "ok"] == ["tiny-c0.5"]  # shard 2/2
    assert own[0]["tiny-c0.5"]["Status"] == "missing"

    viewer = tmp_path / "viewer"  # anyone: a fresh clone pulls every experiment and renders the table
    run(tmp_path, "git", "clone", "-q", str(git_remote), str(viewer))
    dvc(viewer, "exp", "pull", "origin")
    rows = report_rows(viewer, tmp_path / "viewer.csv")
    assert {name: row["Status"] for name, row in rows.items()} == {r["name"]: "ok" for r in TINY_TABLE["rows"]}
    for name, row in rows.items():
        ran_on = own[0] if name != "tiny-c0.5" else own[1]
        assert row["Test F1"] == ran_on[name]["Test F1"] != "-" and row["CV F1"] == ran_on[name]["CV F1"]
        assert row["C"] == str(next(r["overrides"]["head.C"] for r in TINY_TABLE["rows"] if r["name"] == name))
    # the experiments' outputs came through the DVC remote: one applies with its data
    dvc(viewer, "exp", "apply", "tiny-c0.5")
    assert "C: 0.5" in (viewer / "params.yaml").read_text()
    assert (viewer / "data/heads/svm.h5").is_file()
    assert "up to date" in dvc(viewer, "status").stdout
