"""Fold training on a tiny config: fold isolation, schedules, determinism, resume, checkpoints."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from landslide_dvc.core.augment import AugmentParams
from landslide_dvc.core.checkpoint import load_checkpoint, load_fold_model, write_checkpoint
from landslide_dvc.core.errors import DataError, ParamError
from landslide_dvc.core.inference import predict
from landslide_dvc.core.io import file_sha256
from landslide_dvc.core.model import ModelParams, build_model, create_model
from landslide_dvc.core.resume import ResumeState
from landslide_dvc.core.training import TrainParams, learning_rates, train_fold
from landslide_dvc.pipeline.folds import fold_data
from landslide_dvc.pipeline.h5data import Split, SyntheticSet

CHANNELS = ["Red", "Green", "Blue", "NIR", "DVV", "DVH", "DDVV", "DDVH", "AVV", "AVH", "ADVV", "ADVH"]
MODEL = ModelParams(backbone="test_efficientnet", pretrained=False, checkpoint=None, dim=32, drop_rate=0.0)
AUGMENT = AugmentParams(
    color=True, noise_std=0.05, brightness=0.1, contrast=0.1, saturation=0.2, geometric=True, flip=True,
    rotate=30.0, shear=5.0, shift=0.1, mixup=True, mixup_alpha=0.4, cutmix=True, cutmix_alpha=1.0,
    mix_prob=1.0, switch_prob=0.5, label_smoothing=0.0,
)
TRAIN = TrainParams(
    epochs=2, batch_size=8, lr=1e-3, weight_decay=0.0, schedule="cosine", step_size=1, step_gamma=0.5,
    min_lr=1e-5, eval_every=1, eval_batch_size=64, seed=0, resume=True, device="cpu",
)


def tiny_split(n: int = 36, n_splits: int = 3) -> Split:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(n, 12, 32, 32)).astype(np.float32)
    labels = (np.arange(n) % 3 == 0).astype(np.int8)
    images[labels == 1, 6, 8:24, 8:24] += 2.0  # a learnable "scar" in the SAR change band
    fold = ((np.arange(n) // 3) % n_splits).astype(np.int8)  # every fold gets landslides
    return Split(images, [f"ID_{i:03d}" for i in range(n)], CHANNELS, labels, fold, {"n_splits": n_splits})


def synthetic_for(split: Split, fold: int, n: int = 6) -> SyntheticSet:
    positives = [i for i in range(len(split.ids)) if split.labels[i] == 1 and split.fold[i] != fold]
    a, b = positives[:n], positives[1 : n + 1]
    lam = np.full(len(a), 0.5)
    images = 0.5 * split.images[a] + 0.5 * split.images[b]
    return SyntheticSet(images, [split.ids[i] for i in a], [split.ids[i] for i in b], lam)


def test_fold_data_separates_validation_from_training() -> None:
    split = tiny_split()
    data = fold_data(split, synthetic_for(split, 1), 1)
    val = set(data.val_ids)
    assert val == {i for i, f in zip(split.ids, split.fold) if f == 1}
    assert not val & set(data.train_ids[: data.n_original])
    assert all(i.startswith("smote:") for i in data.train_ids[data.n_original :])
    assert len(data.train_images) == data.n_original + 6 and int(data.train_labels[data.n_original :].min()) == 1


def test_smote_offspring_of_validation_images_is_refused() -> None:
    split = tiny_split()
    leaking = synthetic_for(split, 0)  # made from images outside fold 0 ...
    with pytest.raises(DataError, match="SMOTE image made from validation image"):
        fold_data(split, leaking, 1)  # ... some of which are in fold 1


def test_fold_without_landslides_is_refused() -> None:
    split = tiny_split()
    split.labels[split.fold == 2] = 0
    with pytest.raises(DataError, match="fold 2 has no landslide images"):
        fold_data(split, SyntheticSet(np.empty((0, 12, 32, 32), np.float32), [], [], np.empty(0)), 2)


def test_schedules_follow_their_formulas() -> None:
    base = dataclasses.replace(TRAIN, epochs=6, lr=0.1, min_lr=0.001)
    assert learning_rates(dataclasses.replace(base, schedule="none")) == pytest.approx([0.1] * 6)
    step = learning_rates(dataclasses.replace(base, schedule="step", step_size=2, step_gamma=0.5))
    assert step == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    cosine = learning_rates(dataclasses.replace(base, schedule="cosine"))
    expected = [0.001 + 0.5 * (0.1 - 0.001) * (1 + np.cos(np.pi * e / 6)) for e in range(6)]
    assert cosine == pytest.approx(expected)


def test_a_fold_trains_and_is_scored_on_its_own_images(tmp_path: Path) -> None:
    split = tiny_split()
    data = fold_data(split, synthetic_for(split, 0), 0)
    rows = []
    result = train_fold(data, MODEL, AUGMENT, TRAIN, 0, on_epoch=rows.append, progress=False)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert all("val_f1" in r and 0.0 <= r["val_f1"] <= 1.0 for r in rows)
    assert result.val_prob.shape == (len(data.val_ids),)  # OOF: exactly the fold's images
    assert result.best_val_f1 == max(r["val_f1"] for r in rows)
    # the stored best weights reproduce the reported validation probabilities
    model = create_model(MODEL, 12)
    model.load_state_dict(result.state_dict)
    prob, _ = predict(model, data.val_images, 32, torch.device("cpu"), 64)
    np.testing.assert_allclose(prob, result.val_prob, atol=1e-6)


def test_training_is_deterministic() -> None:
    split = tiny_split()
    data = fold_data(split, synthetic_for(split, 0), 0)
    a = train_fold(data, MODEL, AUGMENT, TRAIN, 0, progress=False)
    b = train_fold(data, MODEL, AUGMENT, TRAIN, 0, progress=False)
    assert a.history == b.history
    for key in a.state_dict:
        torch.testing.assert_close(a.state_dict[key], b.state_dict[key], rtol=0, atol=0)


class Killed(Exception):
    pass


def test_resumed_run_matches_uninterrupted_run(tmp_path: Path) -> None:
    split = tiny_split()
    data = fold_data(split, synthetic_for(split, 0), 0)
    params = dataclasses.replace(TRAIN, epochs=3)
    reference = train_fold(data, MODEL, AUGMENT, params, 0, progress=False)

    def kill_after_first(row: dict) -> None:
        if row["epoch"] == 1:
            raise Killed

    resume = ResumeState(tmp_path / "resume", "run-1")
    with pytest.raises(Killed):
        train_fold(data, MODEL, AUGMENT, params, 0, resume=resume, on_epoch=kill_after_first, progress=False)
    assert (tmp_path / "resume" / "state.pt").is_file()
    replayed = []
    resumed = train_fold(data, MODEL, AUGMENT, params, 0, resume=resume, on_epoch=replayed.append, progress=False)
    assert [r["epoch"] for r in replayed] == [1, 2, 3]  # history replayed for the logs, then continued
    assert resumed.history == reference.history
    for key in reference.state_dict:
        torch.testing.assert_close(resumed.state_dict[key], reference.state_dict[key], rtol=0, atol=0)
    resume.finish(3)
    assert not (tmp_path / "resume" / "state.pt").exists() and (tmp_path / "resume" / "complete.json").exists()


def test_resume_state_of_another_config_is_ignored(tmp_path: Path) -> None:
    split = tiny_split()
    data = fold_data(split, synthetic_for(split, 0), 0)
    params = dataclasses.replace(TRAIN, epochs=1)
    train_fold(data, MODEL, AUGMENT, params, 0, resume=ResumeState(tmp_path, "config-a"), progress=False)
    assert ResumeState(tmp_path, "config-b").load() is None
    assert ResumeState(tmp_path, "config-a").load()["epoch"] == 1


def test_checkpoint_round_trip_with_weights_only(tmp_path: Path) -> None:
    model = create_model(MODEL, 12)
    meta = {"backbone": MODEL.backbone, "in_chans": 12, "dim": 32, "drop_rate": 0.0, "channels": CHANNELS, "fold": 0}
    write_checkpoint(tmp_path / "fold_0.pt", model.state_dict(), meta)
    raw = torch.load(tmp_path / "fold_0.pt", weights_only=True)
    assert raw["meta"] == meta
    loaded, loaded_meta = load_fold_model(tmp_path / "fold_0.pt")
    x = torch.randn(3, 12, 32, 32)
    model.eval()
    torch.testing.assert_close(loaded(x), model(x))
    assert loaded_meta["channels"] == CHANNELS


def test_corrupt_and_pickled_checkpoints_are_refused(tmp_path: Path) -> None:
    model = create_model(MODEL, 12)
    path = tmp_path / "fold_0.pt"
    write_checkpoint(path, model.state_dict(), {"backbone": "x", "in_chans": 12, "dim": 32, "channels": [], "fold": 0})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_checkpoint(path)

    class Payload:
        def __reduce__(self):  # would run code when unpickled without weights_only
            return (print, ("pwned",))

    torch.save({"state_dict": {}, "meta": Payload()}, path)
    with pytest.raises(DataError, match="unsafe pickle"):
        load_checkpoint(path)


def test_pretrained_weights_unavailable_fail_fast_without_network(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args, **kwargs):
        raise AssertionError("tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    params = dataclasses.replace(MODEL, backbone="resnet18", pretrained=True)
    with pytest.raises(ParamError) as excinfo:
        create_model(params, 12)
    message = str(excinfo.value)
    assert "hub cache" in message and "model.checkpoint" in message
    missing = dataclasses.replace(params, checkpoint=str(tmp_path / "nope.safetensors"))
    with pytest.raises(ParamError, match="model.checkpoint=.*does not exist"):
        create_model(missing, 12)


def test_local_checkpoint_adapts_first_conv(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    rgb = create_model(dataclasses.replace(MODEL, drop_rate=0.0), 3)
    weights = tmp_path / "imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(weights))
    params = dataclasses.replace(MODEL, pretrained=True, checkpoint=str(weights))
    model = create_model(params, 12)
    first = model.conv_stem.weight
    assert first.shape[1] == 12
    # timm repeats the RGB filters over the 12 channels and rescales by 3/12
    expected = rgb.conv_stem.weight.repeat(1, 4, 1, 1) * 3 / 12
    torch.testing.assert_close(first, expected)


def save_rgb_weights(path: Path, backbone: str = "test_efficientnet") -> dict[str, torch.Tensor]:
    """An ImageNet-layout file: 3-channel stem, 1000-class head, timm's key names."""
    from safetensors.torch import save_file

    rgb = timm.create_model(backbone, in_chans=3, num_classes=1000)
    state = {k: v.contiguous() for k, v in rgb.state_dict().items()}
    save_file(state, str(path))
    return state


def test_weights_provenance_records_source_file_hash_and_stem(tmp_path: Path) -> None:
    weights = tmp_path / "imagenet.safetensors"
    state = save_rgb_weights(weights)
    model, provenance = build_model(dataclasses.replace(MODEL, pretrained=True, checkpoint=str(weights)), 12)
    assert provenance.source == "model.checkpoint" and provenance.file == str(weights)
    assert provenance.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest() == file_sha256(weights)
    assert provenance.stem.startswith("conv_stem: 3->12 channels, timm adapt_input_conv")
    torch.testing.assert_close(model.conv_stem.weight, state["conv_stem.weight"].repeat(1, 4, 1, 1) * 3 / 12)
    assert model.get_classifier().out_features == 2
    meta = provenance.as_meta()
    assert set(meta) == {"weights_source", "weights_file", "weights_sha256", "weights_stem"}
    _, random_init = build_model(MODEL, 20)
    assert random_init.as_meta() == {
        "weights_source": "none", "weights_file": "", "weights_sha256": "", "weights_stem": "random init, 20 channels"
    }


def test_weights_from_the_hub_cache_are_found_offline_and_recorded(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    hub_id = timm.models.get_pretrained_cfg("test_efficientnet").hf_hub_id
    repo = tmp_path / "hub" / ("models--" + hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    cached = repo / "snapshots" / ("0" * 40) / "model.safetensors"
    state = save_rgb_weights(cached)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    model, provenance = build_model(dataclasses.replace(MODEL, pretrained=True), 28)
    assert provenance.source == "hf-hub-cache" and provenance.file == str(cached)
    assert provenance.sha256 == file_sha256(cached) and "3->28 channels" in provenance.stem
    torch.testing.assert_close(model.bn1.weight, state["bn1.weight"])


def test_a_lightning_checkpoint_and_prefixed_keys_are_unwrapped_and_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from safetensors.torch import save_file

    state = save_rgb_weights(tmp_path / "plain.safetensors")
    lightning = tmp_path / "epoch=3-step=400.ckpt"
    torch.save({"epoch": 3, "global_step": 400, "state_dict": {f"model.{k}": v for k, v in state.items()}}, lightning)
    backbone = tmp_path / "ssl.safetensors"
    save_file({f"backbone.{k}": v for k, v in state.items()}, str(backbone))
    for path, prefix in ((lightning, "model."), (backbone, "backbone.")):
        caplog.clear()
        with caplog.at_level("WARNING", logger="landslide_dvc.core.model"):
            model, provenance = build_model(dataclasses.replace(MODEL, pretrained=True, checkpoint=str(path)), 12)
        torch.testing.assert_close(model.conv_stem.weight, state["conv_stem.weight"].repeat(1, 4, 1, 1) * 3 / 12)
        torch.testing.assert_close(model.bn1.weight, state["bn1.weight"])
        assert provenance.file == str(path) and provenance.stem.startswith("conv_stem: 3->12 channels")
        assert any(str(path) in r.getMessage() and repr(prefix) in r.getMessage() for r in caplog.records), caplog.text
    # a prefix that only some keys have is not a wrapper: the keys are refused as they are
    partly = tmp_path / "partly.safetensors"
    save_file({(f"model.{k}" if k.startswith("bn1") else k): v for k, v in state.items()}, str(partly))
    with pytest.raises(ParamError, match="unexpected key 'model.bn1"):
        build_model(dataclasses.replace(MODEL, pretrained=True, checkpoint=str(partly)), 12)


def test_weights_of_another_network_are_refused_naming_key_and_file(tmp_path: Path) -> None:
    weights = tmp_path / "byobnet.safetensors"
    save_rgb_weights(weights, backbone="test_byobnet")
    with pytest.raises(ParamError) as excinfo:
        create_model(dataclasses.replace(MODEL, pretrained=True, checkpoint=str(weights)), 12)
    message = str(excinfo.value)
    assert "\n" not in message and str(weights) in message and "model.backbone=test_efficientnet" in message
    assert re.search(r"missing key 'conv_stem\.weight' \(\d+ missing\), unexpected key 'stages\.\S+' \(\d+ unexpected\);", message)
    # one tensor short is refused too (timm alone would load the rest and leave that one random)
    from safetensors.torch import save_file

    partial = tmp_path / "partial.safetensors"
    state = save_rgb_weights(tmp_path / "good.safetensors")
    state.pop("blocks.0.0.bn1.running_var")
    save_file(state, str(partial))
    with pytest.raises(ParamError, match=r"partial\.safetensors does not fit .*missing key 'blocks\.0\.0\.bn1\.running_var' \(1 missing\);"):
        create_model(dataclasses.replace(MODEL, pretrained=True, checkpoint=str(partial)), 12)
    not_weights = tmp_path / "notes.safetensors"
    not_weights.write_text("not a weights file")
    with pytest.raises(ParamError, match="notes.safetensors is not a readable weights file"):
        create_model(dataclasses.replace(MODEL, pretrained=True, checkpoint=str(not_weights)), 12)


def test_bad_train_params() -> None:
    from landslide_dvc.core.params import parse_section

    good = dataclasses.asdict(TRAIN)
    for change, message in (
        ({"batch_size": 7}, "train.batch_size=7 must be an even number"),
        ({"schedule": "linear"}, "train.schedule='linear' is not allowed"),
        ({"epochs": 0}, "train.epochs=0 must be >= 1"),
        ({"lr": -1.0}, "train.lr=-1.0 must be > 0"),
        ({"unknown": 1}, "unknown key 'train.unknown'"),
    ):
        with pytest.raises(ParamError, match=message):
            parse_section({**good, **change}, TrainParams, "train")
    with pytest.raises(ParamError, match="model.backbone=not_a_model is not a timm model"):
        parse_section({**dataclasses.asdict(MODEL), "backbone": "not_a_model"}, ModelParams, "model")
