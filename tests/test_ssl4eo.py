"""Multispectral pretrained weights (SSL4EO-S12 layout) mapped onto the input channels band by band.

The files are written here in torchgeo's layout: plain state dicts of timm's resnet50 built with
in_chans=13 (Sentinel-2 L1C B1..B12 with B8A) or 2 (Sentinel-1 VV, VH), without the classifier,
random weights. Nothing trains longer than one short epoch.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import timm
import torch
from conftest import make_zindi
from safetensors.torch import save_file
from test_train import AUGMENT, TRAIN

from landslide_dvc.core.band_identity import S1_DB_MEAN, S1_DB_STD, S2_L1C_13
from landslide_dvc.core.bands import L4S_BANDS, RAW_BANDS
from landslide_dvc.core.checkpoint import load_checkpoint
from landslide_dvc.core.errors import ParamError
from landslide_dvc.core.model import ModelParams, build_model
from landslide_dvc.core.segmentation import SegParams, build_unet, load_encoder_weights
from landslide_dvc.pipeline.normalize import FoldsParams, NormalizeParams, run_normalize
from landslide_dvc.pipeline.train_fold import run_config, run_train_fold
from landslide_dvc.pipeline.train_seg import run_config as seg_run_config

ZINDI = list(RAW_BANDS)
L4S = list(L4S_BANDS)
STEM = "conv1.weight"


def ssl4eo_state_dict(in_chans: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return timm.create_model("resnet50", in_chans=in_chans, num_classes=0).state_dict()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("weights")
    s2, s1 = ssl4eo_state_dict(13, 0), ssl4eo_state_dict(2, 1)
    paths = {"s2": root / "ssl4eo_s2_moco_resnet50.pth", "s1": root / "ssl4eo_s1_moco_resnet50.pth",
             "s2_safetensors": root / "ssl4eo_s2.safetensors", "s2_12": root / "twelve_bands.pth",
             "resnet18": root / "resnet18_s2.pth"}
    torch.save(s2, paths["s2"])
    torch.save(s1, paths["s1"])
    save_file(s2, paths["s2_safetensors"])
    torch.save({**s2, STEM: s2[STEM][:, :12].clone()}, paths["s2_12"])
    torch.manual_seed(2)
    torch.save(timm.create_model("resnet18", in_chans=13, num_classes=0).state_dict(), paths["resnet18"])
    torch.manual_seed(3)
    paths["resnet18_s1"] = root / "resnet18_s1.pth"
    torch.save(timm.create_model("resnet18", in_chans=2, num_classes=0).state_dict(), paths["resnet18_s1"])
    return paths


def load(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def params(checkpoint: Path, bands: str | list[str] = "s2_l1c_13", s1: Path | None = None,
           backbone: str = "resnet50") -> ModelParams:
    return ModelParams(backbone=backbone, pretrained=True, checkpoint=str(checkpoint), dim=32, drop_rate=0.0,
                       checkpoint_bands=bands, checkpoint_s1=str(s1) if s1 else None)


def band(name: str) -> int:
    return S2_L1C_13.index(name)


def test_zindi_optical_channels_take_their_bands_filters_exactly(files: dict[str, Path]) -> None:
    model, weights = build_model(params(files["s2"]), 12, ZINDI)
    stem, file_stem = model.state_dict()[STEM], load(files["s2"])[STEM]
    for channel, name in (("Red", "B4"), ("Green", "B3"), ("Blue", "B2"), ("NIR", "B8")):
        assert torch.equal(stem[:, ZINDI.index(channel)], file_stem[:, band(name)]), channel
    for sar in ZINDI[4:]:  # no Sentinel-1 file: the SAR channels start at zero (the rule)
        assert not stem[:, ZINDI.index(sar)].any()
    assert torch.equal(model.state_dict()["layer3.2.conv2.weight"], load(files["s2"])["layer3.2.conv2.weight"])
    assert model.fc.out_features == 2
    assert weights.stem_map.split("; ")[:4] == ["Red=B4", "Green=B3", "Blue=B2", "NIR=B8"]
    assert "DVV=zeros" in weights.stem_map and weights.bands == "s2_l1c_13"
    assert weights.stem == "conv1: 13 bands -> 12 channels mapped by band (4 from the files, 8 zeros)"


def test_zindi_sar_channels_take_the_sentinel1_filters(files: dict[str, Path]) -> None:
    model, weights = build_model(params(files["s2"], s1=files["s1"]), 12, ZINDI)
    stem, s1 = model.state_dict()[STEM], load(files["s1"])[STEM]
    for channel, polarisation in (("DVV", 0), ("AVV", 0), ("DVH", 1), ("AVH", 1)):
        assert torch.equal(stem[:, ZINDI.index(channel)], s1[:, polarisation]), channel
    for change, polarisation in (("DDVV", 0), ("ADVV", 0), ("DDVH", 1), ("ADVH", 1)):  # the change rule
        assert torch.equal(stem[:, ZINDI.index(change)], s1[:, polarisation]), change
    assert torch.equal(stem[:, ZINDI.index("NIR")], load(files["s2"])[STEM][:, band("B8")])
    entries = weights.stem_map.split("; ")
    assert "DVV=VV@s1" in entries and "DDVH=VH@s1 (change rule)" in entries
    meta = weights.as_meta()
    assert meta["weights_bands"] == "s2_l1c_13 + s1_vv_vh" and meta["weights_s1_file"] == str(files["s1"])
    assert len(meta["weights_s1_sha256"]) == 64 and meta["weights_s1_sha256"] != meta["weights_sha256"]


def test_a_sentinel1_file_alone_maps_the_sar_channels_and_zeroes_the_optics(files: dict[str, Path]) -> None:
    model, weights = build_model(params(files["s1"], bands="s1_vv_vh"), 12, ZINDI)
    stem = model.state_dict()[STEM]
    assert torch.equal(stem[:, ZINDI.index("AVH")], load(files["s1"])[STEM][:, 1])
    assert not stem[:, :4].any() and "Red=zeros" in weights.stem_map and "AVH=VH" in weights.stem_map


def test_an_explicit_band_list_and_a_safetensors_file(files: dict[str, Path]) -> None:
    model, weights = build_model(params(files["s2_safetensors"]), 12, ZINDI)
    assert torch.equal(model.state_dict()[STEM][:, 0], load(files["s2"])[STEM][:, band("B4")])
    # an RGB-only file declared by an explicit list: Red <- its first filter (B4), NIR has none
    rgb = {**load(files["s2"]), STEM: load(files["s2"])[STEM][:, [band("B4"), band("B3"), band("B2")]].clone()}
    path = files["s2"].parent / "bgr.pth"
    torch.save(rgb, path)
    model, weights = build_model(params(path, bands=["B4", "B3", "B2"]), 12, ZINDI)
    assert torch.equal(model.state_dict()[STEM][:, ZINDI.index("Blue")], rgb[STEM][:, 2])
    assert weights.bands == "B4,B3,B2" and "NIR=zeros" in weights.stem_map


def test_l4s_unet_maps_b1_to_b12_skipping_b8a(files: dict[str, Path]) -> None:
    seg = SegParams(
        encoder="resnet50", encoder_depth=4, decoder_channels=[32, 16, 8, 8], loss="dice_bce", pos_weight=1.0,
        epochs=1, batch_size=2, lr=1e-3, weight_decay=0.0, flips=False, threshold=0.5, val_fold=0, n_examples=1,
        eval_batch_size=2, seed=0, device="cpu", checkpoint=str(files["s2"]), checkpoint_bands="s2_l1c_13",
    )
    unet = build_unet(seg, in_chans=14)
    weights = load_encoder_weights(unet, seg, L4S)
    stem, file_stem = unet.encoder.state_dict()[STEM], load(files["s2"])[STEM]
    for c, name in enumerate(L4S[:12]):  # B1..B12 of the release: 12 of the file's 13 bands
        assert torch.equal(stem[:, c], file_stem[:, band(name)]), name
    assert not stem[:, 12:].any()  # slope and DEM: the zero rule
    assert torch.equal(unet.encoder.state_dict()["layer2.1.conv1.weight"], load(files["s2"])["layer2.1.conv1.weight"])
    assert weights is not None and "B8=B8; B9=B9" in weights.stem_map and "slope=zeros; DEM=zeros" in weights.stem_map
    assert "B8A" not in weights.stem_map
    # timm's encoder through smp (tu-) takes the same file and mapping
    tu = build_unet(dataclasses.replace(seg, encoder="tu-resnet50"), in_chans=14)
    load_encoder_weights(tu, dataclasses.replace(seg, encoder="tu-resnet50"), L4S)
    assert torch.equal(tu.encoder.model.state_dict()[STEM][:, 11], file_stem[:, band("B12")])
    assert load_encoder_weights(unet, dataclasses.replace(seg, checkpoint=None), L4S) is None


def test_unet_with_an_rgb_file_adapts_the_stem_as_timm_does(tmp_path: Path) -> None:
    imagenet = ssl4eo_state_dict(3, 4)  # the ImageNet layout: a 3-filter stem
    save_file(imagenet, tmp_path / "resnet50_imagenet.safetensors")
    seg = SegParams(
        encoder="resnet50", encoder_depth=3, decoder_channels=[16, 8, 8], loss="dice_bce", pos_weight=1.0, epochs=1,
        batch_size=2, lr=1e-3, weight_decay=0.0, flips=False, threshold=0.5, val_fold=0, n_examples=1,
        eval_batch_size=2, seed=0, device="cpu", checkpoint=str(tmp_path / "resnet50_imagenet.safetensors"),
    )
    unet = build_unet(seg, in_chans=14)
    weights = load_encoder_weights(unet, seg, L4S)
    expected = timm.models.adapt_input_conv(14, imagenet[STEM])
    assert torch.equal(unet.encoder.state_dict()[STEM], expected)
    assert weights is not None and weights.stem == "conv1: 3->14 channels, timm adapt_input_conv"
    assert "weights_stem_map" not in weights.as_meta()


def test_bad_files_are_refused_in_one_line_naming_file_and_stem_shape(files: dict[str, Path]) -> None:
    with pytest.raises(ParamError) as excinfo:
        build_model(params(files["s2_12"]), 12, ZINDI)
    message = str(excinfo.value)
    assert "\n" not in message and str(files["s2_12"]) in message and "(64, 13, 7, 7)" in message
    assert "shape (64, 12, 7, 7)" in message
    with pytest.raises(ParamError) as excinfo:  # another network: the keys do not fit
        build_model(params(files["resnet18"]), 12, ZINDI)
    message = str(excinfo.value)
    assert "\n" not in message and str(files["resnet18"]) in message and "does not fit model.backbone=resnet50" in message
    assert "stem conv1.weight of shape (64, 13, 7, 7)" in message
    with pytest.raises(ParamError, match=r"model\.checkpoint_s1=.*ssl4eo_s2_moco_resnet50\.pth: conv1\.weight has shape "
                                         r"\(64, 13, 7, 7\), but s1_vv_vh \(2 bands\) needs a stem of shape \(64, 2, 7, 7\)"):
        build_model(params(files["s2"], s1=files["s2"]), 12, ZINDI)
    with pytest.raises(ParamError, match=r"model\.checkpoint_s1=.*nope\.pth does not exist"):
        build_model(params(files["s2"], s1=files["s2"].parent / "nope.pth"), 12, ZINDI)
    seg = SegParams(
        encoder="resnet34", encoder_depth=3, decoder_channels=[16, 8, 8], loss="dice_bce", pos_weight=1.0, epochs=1,
        batch_size=2, lr=1e-3, weight_decay=0.0, flips=False, threshold=0.5, val_fold=0, n_examples=1,
        eval_batch_size=2, seed=0, device="cpu", checkpoint=str(files["s2"]), checkpoint_bands="s2_l1c_13",
    )
    with pytest.raises(ParamError) as excinfo:  # resnet50's bottleneck blocks in a resnet34 encoder
        load_encoder_weights(build_unet(seg, 14), seg, L4S)
    message = str(excinfo.value)
    assert "\n" not in message and "does not fit seg.encoder=resnet34" in message and "(64, 13, 7, 7)" in message


def test_default_keys_leave_the_run_fingerprints_unchanged(files: dict[str, Path]) -> None:
    plain = ModelParams(backbone="resnet50", pretrained=False, checkpoint=None, dim=32, drop_rate=0.0)
    config = run_config(plain, AUGMENT, TRAIN)
    assert "checkpoint_bands" not in config["model"] and "checkpoint_s1" not in config["model"]
    assert run_config(params(files["s2"]), AUGMENT, TRAIN)["model"]["checkpoint_bands"] == "s2_l1c_13"
    seg = SegParams(
        encoder="resnet34", encoder_depth=3, decoder_channels=[16, 8, 8], loss="dice_bce", pos_weight=1.0, epochs=1,
        batch_size=2, lr=1e-3, weight_decay=0.0, flips=False, threshold=0.5, val_fold=0, n_examples=1,
        eval_batch_size=2, seed=0, device="cpu",
    )
    assert {"checkpoint", "checkpoint_bands"}.isdisjoint(seg_run_config(seg, {})["seg"])
    _, weights = build_model(plain, 12, ZINDI)
    assert list(weights.as_meta()) == ["weights_source", "weights_file", "weights_sha256", "weights_stem"]


def test_a_fold_records_the_mapping_in_its_checkpoint_and_metrics(tmp_path: Path, files: dict[str, Path]) -> None:
    root = tmp_path / "zindi"
    make_zindi(root, n_train=18, n_test=4, n_pos=6)
    run_normalize(root, NormalizeParams("ssl4eo", 12), FoldsParams([0, 1, 2], 0), tmp_path / "train.h5",
                  tmp_path / "test.h5", tmp_path / "answers.csv", optical_scale=10000.0)
    with h5py.File(tmp_path / "smote.h5", "w") as h5:  # SMOTE off: an empty group per fold
        group = h5.create_group("fold_0")
        group.create_dataset("images", data=np.empty((0, 12, 64, 64), np.float32))
        for name in ("anchor_id", "neighbor_id"):
            group.create_dataset(name, data=np.array([], dtype=object), dtype=h5py.string_dtype())
        group.create_dataset("lam", data=np.empty(0))
    out = tmp_path / "out"
    run_train_fold(  # torchgeo's ResNet-18 files have the same layout; the smaller network keeps the test short
        0, params(files["resnet18"], s1=files["resnet18_s1"], backbone="resnet18"), AUGMENT, dataclasses.replace(TRAIN, epochs=1, batch_size=6),
        train_path=tmp_path / "train.h5", smote_path=tmp_path / "smote.h5", out_model=out / "fold_0.pt",
        out_oof=out / "oof.h5", out_metrics=out / "metrics.json", live_dir=out / "live", resume_dir=None, progress=False,
    )
    meta = load_checkpoint(out / "fold_0.pt")["meta"]
    metrics = json.loads((out / "metrics.json").read_text())
    for record in (meta, metrics):
        assert record["weights_stem_map"].startswith("Red=B4; Green=B3; Blue=B2; NIR=B8; DVV=VV@s1")
        assert record["weights_bands"] == "s2_l1c_13 + s1_vv_vh"
        assert record["weights_s1_file"] == str(files["resnet18_s1"]) and len(record["weights_sha256"]) == 64


def test_ssl4eo_scaling_is_dn_over_10000_and_published_sar_statistics(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root, n_train=12, n_test=3, n_pos=4)
    run_normalize(root, NormalizeParams("ssl4eo", 20), FoldsParams([0, 1], 0), tmp_path / "train.h5",
                  tmp_path / "test.h5", tmp_path / "answers.csv", optical_scale=10000.0)
    with h5py.File(tmp_path / "train.h5") as h5:
        images, center, scale = h5["images"][()], h5.attrs["center"], h5.attrs["scale"]
        assert h5.attrs["method"] == "ssl4eo" and len(h5.attrs["scaling_sources"]) == 12
    raw = info["arrays"][info["train_ids"][0]].transpose(2, 0, 1).astype(np.float64)
    np.testing.assert_allclose(images[0, :4], raw[:4] / 10000.0, rtol=1e-6, atol=1e-7)  # S2: DN / 10,000
    for c, name in enumerate(ZINDI[4:], start=4):
        polarisation = name[-2:]
        if name[1] == "D":  # DDVV, ADVH: a change band, divided by its polarisation's std
            expected = raw[c] / S1_DB_STD[polarisation]
        else:
            expected = (raw[c] - S1_DB_MEAN[polarisation]) / S1_DB_STD[polarisation]
        np.testing.assert_allclose(images[0, c], expected, rtol=1e-5, atol=1e-5, err_msg=name)
    # the derived channels (indices) keep the standard statistics, fitted on the training images
    assert center[12] != 0.0 and abs(images[:, 12].mean()) < 1e-4 and scale[:4].tolist() == [1.0] * 4
    assert center[4] == S1_DB_MEAN["VV"] and scale[5] == S1_DB_STD["VH"]


def test_ssl4eo_scaling_is_refused_for_landslide4sense() -> None:
    with pytest.raises(ParamError, match=r"normalize\.method=ssl4eo does not fit data\.format: l4s \(the release is "
                                         r"already rescaled"):
        NormalizeParams("ssl4eo", 14).check_format("l4s")
