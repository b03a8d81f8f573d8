"""`landslide-dvc describe`: a bundle's STAC MLM Item, built from its manifest, validated by stac-model's
pydantic models and read back by pystac. A manifest written here in the bundle's layout stands in for
a trained bundle (describe reads the manifest only)."""

from __future__ import annotations

import json
from pathlib import Path

import pystac
import pytest
from stac_model.schema import MLModelProperties

from landslide_dvc.cli import main
from landslide_dvc.serve.mlm import model_properties

BANDS = ["Red", "Green", "Blue", "NIR", "DVV", "DVH", "DDVV", "DDVH", "AVV", "AVH", "ADVV", "ADVH"]


def write_bundle(folder: Path, kind: str = "classifier") -> dict:
    folder.mkdir(parents=True)
    manifest = {
        "format": 1, "kind": kind, "package_version": "0.1.0", "backbone": "tf_efficientnetv2_l", "input_size": 64,
        "bands": BANDS, "channels": BANDS, "optical_scale": 10000.0,
        "channel_recipe": "landslide_dvc.core.channels.raw_to_channels",
        "normalization": {"method": "standard", "center": [0.2] * 4 + [-11.0] * 8, "scale": [0.1] * 4 + [4.0] * 8},
        "n_folds": 2, "head": "svm", "threshold": 0.35, "tta": 8,
        "files": {"folds/fold_0.safetensors": "ab" * 32, "heads/fold_0.skops": "cd" * 32},
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_the_mlm_fields_validate_and_carry_bands_scaling_classes_and_threshold(tmp_path: Path) -> None:
    manifest = write_bundle(tmp_path / "bundle")
    properties = model_properties(manifest)
    dumped = properties.model_dump(by_alias=True, exclude_unset=True, exclude_defaults=True)
    MLModelProperties.model_validate(dumped)  # stac-model's own schema, offline
    (model_input,) = dumped["mlm:input"]
    assert model_input["bands"] == BANDS and model_input["input"]["shape"] == [-1, 12, 64, 64]
    assert model_input["input"]["dim_order"] == ["batch", "bands", "height", "width"]
    scaling = model_input["value_scaling"]
    assert scaling[0] == {"type": "z-score", "mean": 2000.0, "stddev": 1000.0}  # Sentinel-2 digital numbers
    assert scaling[4] == {"type": "z-score", "mean": -11.0, "stddev": 4.0}  # SAR in dB
    (output,) = dumped["mlm:output"]
    assert [(c["value"], c["name"]) for c in output["classification:classes"]] == [(0, "not_landslide"), (1, "landslide")]
    assert output["post_processing_function"]["expression"] == "probability >= 0.35"
    assert set(dumped["mlm:tasks"]) == {"classification"}


def test_describe_writes_an_item_pystac_reads_with_every_weights_file_and_its_checksum(tmp_path: Path) -> None:
    write_bundle(tmp_path / "models" / "bundle")
    out = tmp_path / "models" / "bundle.mlm.json"
    assert main(["describe", str(tmp_path / "models" / "bundle"), "--out", str(out)]) == 0
    item = pystac.Item.from_file(str(out))
    assert any("stac-extensions.github.io/mlm/" in e for e in item.stac_extensions)
    assets = {a.title: a.to_dict() for a in item.assets.values()}
    assert assets["folds/fold_0.safetensors"]["href"] == "bundle/folds/fold_0.safetensors"
    assert assets["folds/fold_0.safetensors"]["file:checksum"] == "1220" + "ab" * 32
    assert "mlm:weights" in assets["folds/fold_0.safetensors"]["roles"]
    assert assets["heads/fold_0.skops"]["mlm:artifact_type"] == "skops"
    assert item.properties["mlm:architecture"] == "tf_efficientnetv2_l"
    assert main(["describe", str(tmp_path / "models" / "bundle"), "--out", str(out)]) == 1  # never replaces a file


def test_a_segmentation_bundle_is_described_per_pixel(tmp_path: Path) -> None:
    manifest = write_bundle(tmp_path / "seg", kind="segmentation")
    dumped = model_properties({**manifest, "input_size": 128}).model_dump(by_alias=True, exclude_unset=True, exclude_defaults=True)
    assert set(dumped["mlm:tasks"]) == {"semantic-segmentation"}
    assert dumped["mlm:output"][0]["result"]["shape"] == [-1, 1, 128, 128]


@pytest.mark.parametrize("where", ["inside", "missing"])
def test_bad_bundles_and_outputs_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str) -> None:
    bundle = tmp_path / "bundle"
    if where == "inside":
        write_bundle(bundle)
        out, message = bundle / "mlm.json", "lies inside the bundle"
    else:
        out, message = tmp_path / "mlm.json", "is not a bundle manifest"
    assert main(["describe", str(bundle), "--out", str(out)]) == 1
    assert message in capsys.readouterr().err and not out.exists()
