"""Every Fig. 5 backbone at the paper preset's input size (with its row's model.dim), on CPU.

Each is created with 12 input channels from an ImageNet-layout weights file written here (the
timm model with a 3-channel stem and the 1000-class head, saved with safetensors), trains one
step, goes through a fold checkpoint (weights_only) and yields the embeddings the heads will see.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import timm
import torch
from conftest import REPO_ROOT
from safetensors.torch import save_file
from timm.models import adapt_input_conv

from landslide_dvc.core.augment import AugmentParams, BatchAugment
from landslide_dvc.core.checkpoint import load_fold_model, write_checkpoint
from landslide_dvc.core.inference import predict
from landslide_dvc.core.model import ModelParams, build_model
from landslide_dvc.core.params import get_section, load_params
from landslide_dvc.core.training import TrainStep
from landslide_dvc.experiments import load_preset, load_table

pytestmark = pytest.mark.slow

CHANNELS = ["Red", "Green", "Blue", "NIR", "DVV", "DVH", "DDVV", "DDVH", "AVV", "AVH", "ADVV", "ADVH"]

# The embedding width (timm's num_features) each backbone gives the SVM/LightGBM heads.
EMBEDDING_WIDTH = {
    "inception_v3": 2048,
    "resnet50": 2048,
    "regnety_320": 3712,
    "wide_resnet50_2": 2048,
    "vit_base_patch16_224": 768,
    "swin_base_patch4_window7_224": 1024,
    "davit_base": 1024,
    "tf_efficientnetv2_l": 1280,
}


def fig5_rows() -> list[tuple[str, ModelParams]]:
    """(row name, the model section it runs with): params.yaml, then the paper preset, then the row."""
    params = load_params(REPO_ROOT / "params.yaml")
    model = {**params["model"]}
    for key, value in load_preset("paper", REPO_ROOT).items():
        if key.startswith("model."):
            model[key.removeprefix("model.")] = value
    rows = []
    for row in load_table("fig5", REPO_ROOT).rows:
        merged = dict(model)
        merged.update({k.removeprefix("model."): v for k, v in row.overrides.items() if k.startswith("model.")})
        rows.append((row.name, get_section({"model": merged}, ModelParams, "model")))
    return rows


ROWS = fig5_rows()


def test_fig5_lists_every_backbone_checked_here() -> None:
    assert sorted(p.backbone for _, p in ROWS) == sorted(EMBEDDING_WIDTH)


def write_imagenet_weights(backbone: str, path: Path) -> dict[str, torch.Tensor]:
    rgb = timm.create_model(backbone, in_chans=3, num_classes=1000)
    state = {k: v.contiguous() for k, v in rgb.state_dict().items()}
    save_file(state, str(path))
    return state


@pytest.mark.parametrize(("row", "params"), ROWS, ids=[name for name, _ in ROWS])
def test_backbone_trains_a_step_and_embeds_at_the_preset_size(row: str, params: ModelParams, tmp_path: Path) -> None:
    weights = tmp_path / "imagenet.safetensors"
    rgb = write_imagenet_weights(params.backbone, weights)
    torch.manual_seed(0)
    params = dataclasses.replace(params, checkpoint=str(weights))
    assert params.pretrained and params.dim in (224, 256)
    model, provenance = build_model(params, in_chans=12)
    assert provenance.source == "model.checkpoint" and "3->12 channels" in provenance.stem

    stem_name = timm.models.get_pretrained_cfg(params.backbone).first_conv
    stem = model.get_submodule(stem_name).weight
    assert stem.shape[1] == 12
    torch.testing.assert_close(stem, adapt_input_conv(12, rgb[f"{stem_name}.weight"]))  # from the file, not random

    augment = AugmentParams(
        color=True,
        noise_std=0.05,
        brightness=0.1,
        contrast=0.1,
        saturation=0.2,
        geometric=True,
        flip=True,
        rotate=15.0,
        shear=5.0,
        shift=0.05,
        mixup=True,
        mixup_alpha=0.4,
        cutmix=True,
        cutmix_alpha=1.0,
        mix_prob=1.0,
        switch_prob=0.5,
        label_smoothing=0.0,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    step = TrainStep(model, optimizer, BatchAugment(augment, CHANNELS), params.dim, torch.device("cpu"))
    images = torch.randn(2, 12, 64, 64)  # two 64 px patches, resized to the preset's size on the fly
    before = stem.detach().clone()
    model.train()
    loss = step(images, torch.tensor([0, 1]))
    assert loss == loss and loss > 0  # finite
    assert not torch.equal(before, model.get_submodule(stem_name).weight.detach())  # the step reached the stem

    meta = {
        "backbone": params.backbone,
        "in_chans": 12,
        "dim": params.dim,
        "drop_rate": params.drop_rate,
        "channels": CHANNELS,
        "fold": 0,
        **provenance.as_meta(),
    }
    write_checkpoint(tmp_path / "fold_0.pt", model.state_dict(), meta)
    loaded, loaded_meta = load_fold_model(tmp_path / "fold_0.pt")
    assert loaded_meta["weights_sha256"] == provenance.sha256
    prob, features = predict(loaded, images, params.dim, torch.device("cpu"), 2, with_features=True)
    assert features is not None and features.shape == (2, EMBEDDING_WIDTH[params.backbone])
    assert prob.shape == (2,) and ((prob >= 0) & (prob <= 1)).all()
