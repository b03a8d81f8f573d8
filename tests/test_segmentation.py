"""The U-Net baseline in the one training loop: determinism, resume, last-epoch weights, DVCLive curves."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from landslide_dvc.core.errors import ParamError
from landslide_dvc.core.resume import ResumeState
from landslide_dvc.core.segmentation import (
    SegData,
    SegParams,
    build_unet,
    pixel_scores,
    predict_probabilities,
    train_unet,
)
from landslide_dvc.pipeline.train_seg import run_train_seg

TINY = SegParams(
    encoder="tu-test_efficientnet", encoder_depth=3, decoder_channels=[16, 8, 4], loss="dice_bce", pos_weight=5.0,
    epochs=3, batch_size=4, lr=0.003, weight_decay=0.0, flips=True, threshold=0.5, val_fold=0, n_examples=2,
    eval_batch_size=8, seed=0, device="cpu", resume=True, nproc=1, threads=1,
)


def tiny_data(n_train: int = 12, n_val: int = 4, size: int = 32) -> SegData:
    rng = np.random.default_rng(0)
    masks = np.zeros((n_train + n_val, size, size), np.uint8)
    for k in range(0, n_train + n_val, 2):
        masks[k, 8:20, 10:24] = 1
    images = rng.normal(size=(n_train + n_val, 3, size, size)).astype(np.float32)
    images[:, 0] += 2.0 * masks  # a scar is brighter in channel 0
    return SegData(images[:n_train], masks[:n_train], images[n_train:], masks[n_train:],
                   [f"image_{k}" for k in range(n_val)], ["B2", "B3", "B4"], "ValidData")


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_unet_training_is_deterministic_and_keeps_the_last_epoch() -> None:
    data = tiny_data()
    first, second = train_unet(data, TINY, progress=False), train_unet(data, TINY, progress=False)
    assert same_weights(first.state_dict, second.state_dict)
    assert [row["epoch"] for row in first.history] == [1, 2, 3]
    assert {"train_loss", "lr", "pixel_f1", "pixel_precision", "pixel_recall", "pixel_iou"} <= first.history[-1].keys()
    assert first.history[0]["lr"] == pytest.approx(TINY.lr) and first.history[-1]["lr"] < TINY.lr  # cosine decay
    # the kept weights are the last epoch's: they reproduce its validation probabilities and scores
    model = build_unet(TINY, in_chans=3)
    model.load_state_dict(first.state_dict)
    prob = predict_probabilities(model, data.val_images, 8, torch.device("cpu"))
    assert np.array_equal(prob, first.val_prob)
    assert pixel_scores(prob >= 0.5, data.val_masks)["pixel_f1"] == first.history[-1]["pixel_f1"]


class Killed(Exception):
    pass


def test_killed_unet_run_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    data = tiny_data()
    uninterrupted = train_unet(data, TINY, progress=False)

    def kill_after_epoch_2(row: dict[str, float]) -> None:
        if row["epoch"] == 2:
            raise Killed

    resume = ResumeState(tmp_path / "resume", "run")
    with pytest.raises(Killed):
        train_unet(data, TINY, resume=resume, on_epoch=kill_after_epoch_2, progress=False)
    assert torch.load(tmp_path / "resume" / "state.pt", weights_only=True)["epoch"] == 2
    logged: list[float] = []
    resumed = train_unet(data, TINY, resume=resume, on_epoch=lambda row: logged.append(row["epoch"]), progress=False)
    assert logged == [1, 2, 3]  # the curves of the finished epochs are replayed, then epoch 3 trains
    assert same_weights(resumed.state_dict, uninterrupted.state_dict)
    assert resumed.history == uninterrupted.history
    without = train_unet(data, dataclasses.replace(TINY, resume=False), resume=resume, progress=False)
    assert same_weights(without.state_dict, uninterrupted.state_dict)  # seg.resume: false retrains from scratch


def test_train_seg_writes_model_metrics_examples_and_dvclive_curves(tmp_path: Path) -> None:
    data = tiny_data()
    params = dataclasses.replace(TINY, epochs=2)
    metrics = run_train_seg(
        params, data, data_digests={"train": "a", "test": "b"}, out_model=tmp_path / "unet.pt",
        out_metrics=tmp_path / "seg.json", out_examples=tmp_path / "examples.png", live_dir=tmp_path / "live",
        resume_dir=tmp_path / "resume", progress=False,
    )
    assert metrics is not None and json.loads((tmp_path / "seg.json").read_text()) == metrics
    assert metrics["epochs"] == 2 and metrics["validation"] == "ValidData" and metrics["val_images"] == 4
    saved = torch.load(tmp_path / "unet.pt", weights_only=True)
    assert saved["meta"]["in_chans"] == 3 and saved["meta"]["channels"] == ["B2", "B3", "B4"]
    curve = (tmp_path / "live" / "plots" / "metrics" / "val" / "pixel_f1.tsv").read_text().splitlines()
    assert curve[0].split("\t") == ["step", "pixel_f1"] and len(curve) == 3
    assert (tmp_path / "examples.png").stat().st_size > 1000
    assert (tmp_path / "resume" / "complete.json").is_file() and not (tmp_path / "resume" / "state.pt").exists()


def test_seg_nproc_must_come_from_torchrun() -> None:
    with pytest.raises(ParamError, match=r"seg.nproc=2 needs the training processes torchrun starts; run `python stages/train_seg.py`"):
        run_train_seg(dataclasses.replace(TINY, nproc=2), tiny_data(), data_digests={}, out_model=Path("x"),
                      out_metrics=Path("y"), out_examples=Path("z"), live_dir=Path("w"), resume_dir=None)
    with pytest.raises(ParamError, match="seg.nproc=0 must be >= 1"):
        dataclasses.replace(TINY, nproc=0).validate()


@pytest.mark.slow
def test_train_seg_stage_trains_with_two_processes_under_torchrun(tmp_path: Path, monkeypatch, capsys) -> None:
    """`seg.nproc: 2`: the stage script launches torchrun; rank 0 alone reports and writes, once."""
    from conftest import REPO_ROOT
    from helpers import run_stage_script
    from test_l4s import l4s_params, make_l4s

    make_l4s(tmp_path / "data" / "l4s", n_train=16, n_valid=4, size=32)
    seg = {"encoder": "tu-test_efficientnet", "encoder_depth": 3, "decoder_channels": [16, 8, 4], "epochs": 2,
           "batch_size": 8, "eval_batch_size": 8, "n_examples": 2, "nproc": 2, "threads": 2, "device": "cpu"}
    l4s_params(tmp_path / "params.yaml", data={"dir": "data/l4s"}, folds={"ids": [0, 1]}, seg=seg)
    code, err = run_stage_script("normalize", tmp_path, monkeypatch, capsys)
    assert code == 0, err
    result = subprocess.run([sys.executable, str(REPO_ROOT / "stages" / "train_seg.py")], cwd=tmp_path,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("train_seg: ValidData pixel precision") == 1, result.stdout
    assert result.stderr.count("train_seg epoch 2/2: lr=") == 1  # rank 0 alone logs the epochs
    metrics = json.loads((tmp_path / "metrics" / "seg.json").read_text())
    assert metrics["epochs"] == 2 and metrics["val_images"] == 4
    assert torch.load(tmp_path / "models" / "seg" / "unet.pt", weights_only=True)["meta"]["in_chans"] == 14
    assert len((tmp_path / "dvclive" / "train_seg" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()) == 3
    assert (tmp_path / "models" / "resume" / "seg" / "complete.json").is_file()
