"""Data-parallel fold training: one process stays today's run byte for byte; two processes under
torchrun (gloo on CPU) train a fold, write it once, validate on the whole fold and resume after a kill."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest
import torch
import yaml
from pipeline import copy_repo, dvc, env, stages_run
from test_train import AUGMENT, MODEL, TRAIN, synthetic_for, tiny_split

from landslide_dvc.core.checkpoint import load_fold_model
from landslide_dvc.core.distributed import Ranks, rank_threads
from landslide_dvc.core.errors import ParamError
from landslide_dvc.core.inference import predict
from landslide_dvc.core.loop import rank_share
from landslide_dvc.core.metrics import f1
from landslide_dvc.core.params import parse_section
from landslide_dvc.core.training import TrainParams, train_fold
from landslide_dvc.pipeline.folds import fold_data
from landslide_dvc.pipeline.h5data import load_split
from landslide_dvc.pipeline.train_fold import run_config

# sha256 of the weights and validation probabilities of the tiny run below, recorded with the code
# before train.nproc existed (torch 2.14.1+cu130, AVX2 CPU, 1 thread). AVX-512 CPUs reproduce it
# under landslide's CPU pins (they report AVX2). Floating-point results may legitimately differ on
# another torch build or ISA, so elsewhere the comparison is skipped.
SINGLE_PROCESS_DIGEST = "bc94cdf7314820d64388a1fb2cc85ebdeee40ea2a76c3d7b51faa6155714cd01"
DIGEST_ENVIRONMENT = ("2.14.1+cu130", "AVX2")


def tiny_run(epochs: int = 2):
    """test_train's tiny fold on one thread (train.threads=1, as the digest was recorded)."""
    threads = torch.get_num_threads()
    try:
        split = tiny_split()
        data = fold_data(split, synthetic_for(split, 0), 0)
        params = dataclasses.replace(TRAIN, epochs=epochs, threads=1)
        return train_fold(data, MODEL, AUGMENT, params, 0, progress=False)
    finally:
        torch.set_num_threads(threads)


def digest(result) -> str:
    hasher = hashlib.sha256()
    for key in sorted(result.state_dict):
        hasher.update(key.encode())
        hasher.update(result.state_dict[key].contiguous().numpy().tobytes())
    hasher.update(result.val_prob.tobytes())
    return hasher.hexdigest()


def test_one_process_reproduces_the_weights_recorded_before_data_parallel_training() -> None:
    here = (torch.__version__, torch.backends.cpu.get_cpu_capability())
    if here != DIGEST_ENVIRONMENT:
        pytest.skip(f"digest recorded with torch/CPU {DIGEST_ENVIRONMENT}, this is {here}")
    assert digest(tiny_run()) == SINGLE_PROCESS_DIGEST


def test_one_process_never_touches_torch_distributed(monkeypatch) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    def forbidden(*args, **kwargs):
        raise AssertionError("the single-process path called torch.distributed")

    for name in ("init_process_group", "all_reduce", "all_gather", "broadcast", "barrier"):
        monkeypatch.setattr(dist, name, forbidden)
    monkeypatch.setattr(DistributedDataParallel, "__init__", forbidden)
    result = tiny_run(epochs=1)
    assert result.best_epoch == 1 and len(result.val_prob) == 12


def test_fingerprint_of_one_process_is_the_one_from_before_nproc() -> None:
    one = run_config(MODEL, AUGMENT, TRAIN)
    assert "nproc" not in one["train"]  # resume states and checkpoint run_ids of earlier runs stay valid
    two = run_config(MODEL, AUGMENT, dataclasses.replace(TRAIN, nproc=2))
    assert two["train"]["nproc"] == 2 and {k: v for k, v in two["train"].items() if k != "nproc"} == one["train"]


def test_global_batch_must_split_into_even_per_rank_batches() -> None:
    good = dataclasses.asdict(TRAIN)
    assert parse_section({**good, "batch_size": 36, "nproc": 2}, TrainParams, "train").nproc == 2
    with pytest.raises(ParamError, match=r"train.batch_size=36 does not split into train.nproc=4 .* multiple of 8"):
        parse_section({**good, "batch_size": 36, "nproc": 4}, TrainParams, "train")
    with pytest.raises(ParamError, match="train.nproc=0 must be >= 1"):
        parse_section({**good, "nproc": 0}, TrainParams, "train")


def test_ranks_shard_each_global_batch_in_order() -> None:
    batches = [torch.arange(0, 8), torch.arange(8, 16), torch.arange(16, 22)]  # the last: a tiny set's batch
    shares = [Ranks(rank=r, local_rank=r, world=2).shard(batches) for r in (0, 1)]
    assert [s.tolist() for s in shares[0]] == [[0, 1, 2, 3], [8, 9, 10, 11], [16, 17]]
    assert [s.tolist() for s in shares[1]] == [[4, 5, 6, 7], [12, 13, 14, 15], [18, 19]]
    # together the ranks see exactly the single process's batches (minus the odd share of a tiny one)
    for step, batch in enumerate(batches[:2]):
        assert torch.equal(torch.cat([shares[0][step], shares[1][step]]), batch)
    assert Ranks().shard(batches) is batches


def test_ranks_come_from_torchrun_and_must_match_train_nproc(monkeypatch) -> None:
    for name in ("TORCHELASTIC_RUN_ID", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert Ranks.from_env(1) == Ranks()
    with pytest.raises(ParamError, match="train.nproc=2 needs the training processes torchrun starts"):
        Ranks.from_env(2)
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    for name, value in (("WORLD_SIZE", "2"), ("LOCAL_WORLD_SIZE", "2"), ("RANK", "1"), ("LOCAL_RANK", "1")):
        monkeypatch.setenv(name, value)
    assert Ranks.from_env(2) == Ranks(rank=1, local_rank=1, world=2)
    assert not Ranks.from_env(2).is_main
    with pytest.raises(ParamError, match="torchrun started 2 processes but train.nproc=1"):
        Ranks.from_env(1)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    with pytest.raises(ParamError, match="one machine"):
        Ranks.from_env(2)


def test_train_threads_are_shared_between_the_ranks() -> None:
    # 2 ranks on the default train.threads=2 run 1 thread each, not 2 + 2 on 2 cores
    assert [rank_share(2, n) for n in (1, 2, 3)] == [2, 1, 1]
    assert rank_share(8, 2) == 4
    assert rank_share(0, 2) == 0  # automatic: Ranks.connect shares the cores


def test_rank_threads_share_the_cores(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5, 6, 7})
    assert [rank_threads(n) for n in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert rank_threads(2) == 3


# ------------------------------------------------------------------------------ 2 processes, gloo


def set_train_params(repo: Path, **values: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


FOLD_OUTPUTS = ("models/fold_0.pt", "data/oof/fold_0.h5", "metrics/train_fold/0.json")
EPOCHS = 4


@pytest.fixture(scope="module")
def two_process_run(built: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The micro pipeline's fold 0 retrained by `dvc repro` with train.nproc=2 (the same stage command)."""
    repo = copy_repo(built, tmp_path_factory.mktemp("ddp") / "repo")
    set_train_params(repo, nproc=2, epochs=EPOCHS)
    result = dvc(repo, "repro", "train_fold@0")
    assert stages_run(result.stdout) == ["train_fold@0"], result.stdout
    return repo, result.stdout + result.stderr


@pytest.mark.slow
def test_two_processes_train_a_fold_and_rank_0_writes_it_once(two_process_run: tuple[Path, str]) -> None:
    repo, output = two_process_run
    assert output.count("train_fold@0: best validation F1") == 1  # only rank 0 reports ...
    for epoch in range(1, EPOCHS + 1):
        assert output.count(f"fold 0 epoch {epoch}/{EPOCHS}: lr=") == 1, output  # ... and logs
    tsv = (repo / "dvclive/train_fold/0/plots/metrics/val/f1.tsv").read_text().splitlines()
    assert len(tsv) == 1 + EPOCHS  # DVCLive: one writer, one row per epoch
    assert (repo / "models/resume/fold_0/complete.json").is_file()
    assert not (repo / "models/resume/fold_0/state.pt").exists()
    assert not list(repo.rglob("*.partial-*"))
    metrics = json.loads((repo / "metrics/train_fold/0.json").read_text())
    assert metrics["epochs"] == EPOCHS and 1 <= metrics["best_epoch"] <= EPOCHS


@pytest.mark.slow
def test_two_process_validation_f1_is_a_single_process_evaluation_of_the_saved_weights(
    two_process_run: tuple[Path, str],
) -> None:
    repo, _ = two_process_run
    model, meta = load_fold_model(repo / "models/fold_0.pt")
    split = load_split(repo / "data/normalized/train.h5")
    in_fold = split.fold == 0
    prob, _ = predict(model, torch.from_numpy(split.images[in_fold]), int(meta["dim"]), torch.device("cpu"), 7)
    with h5py.File(repo / "data/oof/fold_0.h5") as h5:
        oof_prob, oof_ids = h5["prob"][:], [i.decode() for i in h5["ids"][:]]
    assert oof_ids == [i for i, v in zip(split.ids, in_fold) if v]  # gathered back in the fold's order
    np.testing.assert_allclose(oof_prob, prob, atol=1e-6)
    single_f1 = f1(split.labels[in_fold], (prob >= 0.5).astype(np.int8))
    metrics = json.loads((repo / "metrics/train_fold/0.json").read_text())
    assert metrics["best_val_f1"] == meta["best_val_f1"] == single_f1


def training_processes(repo: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "cwd"]):
        try:
            if proc.info["cwd"] == str(repo) and any("train_fold" in part for part in proc.info["cmdline"] or []):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


@pytest.mark.slow
def test_killed_two_process_run_resumes_to_the_uninterrupted_weights(
    two_process_run: tuple[Path, str], tmp_path: Path
) -> None:
    reference, _ = two_process_run
    repo = copy_repo(reference, tmp_path / "repo")
    for name in FOLD_OUTPUTS:
        (repo / name).unlink()
    (repo / "models/resume/fold_0/complete.json").unlink()
    state = repo / "models/resume/fold_0/state.pt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro", "train_fold@0"], cwd=repo, env=env(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.time() + 300
    while not state.exists():  # rank 0's checkpoint of epoch 1
        assert proc.poll() is None and time.time() < deadline, "training ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # DVC, the torchrun agent; the ranks die with the agent
    proc.wait()
    deadline = time.time() + 30
    while training_processes(repo):
        assert time.time() < deadline, "training processes outlived the killed stage"
        time.sleep(0.2)
    assert not any((repo / name).exists() for name in FOLD_OUTPUTS)
    result = dvc(repo, "repro", "train_fold@0")
    resumed = result.stdout + result.stderr
    assert "fold 0: resuming after epoch" in resumed and resumed.count("resuming after epoch") == 1
    assert f"resuming after epoch {EPOCHS}/" not in resumed  # it really was killed mid-run
    for name in ("models/fold_0.pt", "metrics/train_fold/0.json"):
        assert (repo / name).read_bytes() == (reference / name).read_bytes(), name
    assert not list(repo.rglob("*.partial-*"))
