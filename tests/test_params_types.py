"""What ``landslide_dvc.core.params`` makes of each kind of YAML value, pinned as a table.

Every section a stage reads is parsed strictly: a YAML int widens to a float field (``lr: 1`` is
1.0), nothing else converts (a bool is not an int, an int is not a bool, ``"3"`` is not a number),
and every refusal is one line naming ``section.key``. These values feed resume fingerprints and
output attributes, so the types are part of the contract.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from conftest import REPO_ROOT
from test_params_dvc import SECTIONS as ZINDI_SECTIONS

from landslide_dvc.core.errors import ParamError
from landslide_dvc.core.params import get_section, load_params, parse_section
from landslide_dvc.core.segmentation import SegParams
from landslide_dvc.core.training import TrainParams
from landslide_dvc.formats.l4s import L4SParams
from landslide_dvc.pipeline.export_seg import ExportSegParams
from landslide_dvc.synthetic.stand_in import SynthesizeParams
from landslide_dvc.synthetic.stand_in_l4s import SynthesizeL4SParams

SECTIONS: dict[str, type] = {
    **ZINDI_SECTIONS,
    "synthesize_l4s": SynthesizeL4SParams,
    "l4s": L4SParams,
    "seg": SegParams,
    "export_seg": ExportSegParams,
}

ZINDI = load_params(REPO_ROOT / "params.yaml")
L4S = load_params(REPO_ROOT / "l4s" / "params.yaml")


def base(section: str) -> dict[str, Any]:
    return dict(L4S[section] if section in ("synthesize_l4s", "l4s", "seg", "export_seg") else ZINDI[section])


def parse(section: str, change: dict[str, Any]) -> Any:
    return parse_section({**base(section), **change}, SECTIONS[section], section)


LGBM = {"n_estimators": 5, "learning_rate": 1, "class_weight": None, "boosting_type": "dart"}
DEVICES = "'auto', 'cpu', 'cuda', 'cuda:auto'"

# (section.key, YAML value, the value the stage sees); the type must match too
ACCEPTED = [
    ("train.lr", 1, 1.0),  # an int widens to float
    ("train.lr", 0.01, 0.01),
    ("train.epochs", 3, 3),
    ("train.resume", False, False),
    ("train.device", "cuda:auto", "cuda:auto"),
    ("model.checkpoint", None, None),
    ("model.checkpoint", "weights.safetensors", "weights.safetensors"),
    ("model.drop_rate", 0, 0.0),
    ("model.checkpoint_bands", "rgb", "rgb"),
    ("model.checkpoint_bands", "s2_l1c_13", "s2_l1c_13"),
    ("model.checkpoint_bands", ["B4", "B3", "B2"], ["B4", "B3", "B2"]),
    ("model.checkpoint_s1", None, None),
    ("model.checkpoint_s1", "weights/s1.pth", "weights/s1.pth"),
    ("normalize.method", "ssl4eo", "ssl4eo"),
    ("seg.checkpoint", None, None),
    ("seg.checkpoint_bands", "rgb", "rgb"),
    ("data.optical_scale", 1, 1.0),
    ("data.format", "zindi", "zindi"),
    ("normalize.channels", 20, 20),
    ("head.threshold", "oof", "oof"),
    ("head.threshold", 0.5, 0.5),
    ("head.gamma", 1, 1.0),  # float | Literal: the int widens to float
    ("head.gamma", "scale", "scale"),
    ("head.C", 2, 2.0),
    ("head.lgbm", LGBM, LGBM),  # passed on as given: learning_rate stays an int
    ("head.lgbm", {}, {}),
    ("stats_baseline.percentiles", [5, 50.5, 95], [5.0, 50.5, 95.0]),
    ("stats_baseline.percentiles", [], []),
    ("stats_baseline.threshold", 0.25, 0.25),
    ("seg.decoder_channels", [64, 32, 16, 8], [64, 32, 16, 8]),
    ("seg.device", "anything", "anything"),  # a plain str field: the device is checked where it is used
    ("seg.threshold", 0.5, 0.5),
    ("synthesize_l4s.haze_blue", [0, 0.04], [0.0, 0.04]),
    ("embed.tta", 8, 8),
    ("export_seg.tta", 1, 1),
    ("smote.alpha", 2, 2.0),
    ("augment.rotate", 0, 0.0),
    ("scene.origin_m", [600000, 3100000], [600000.0, 3100000.0]),
    ("scene.cloud_share", 0, 0.0),
    ("map_scene.device", "cpu", "cpu"),
]


def same(a: Any, b: Any) -> bool:
    """Equal with the same types all the way down (1 == 1.0 == True are not the same here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b))


@pytest.mark.parametrize(("key", "value", "expected"), ACCEPTED, ids=[f"{k}={v!r}" for k, v, _ in ACCEPTED])
def test_accepted_values_reach_the_stage_with_their_type(key: str, value: Any, expected: Any) -> None:
    section, field = key.split(".")
    seen = getattr(parse(section, {field: value}), field)
    assert same(seen, expected), (key, value, seen)


# (section, change, the whole one-line message)
REFUSED = [
    ("train", {"epochs": True}, "train.epochs=True has the wrong type; expected int"),
    ("train", {"epochs": 3.0}, "train.epochs=3.0 has the wrong type; expected int"),
    ("train", {"epochs": "3"}, "train.epochs='3' has the wrong type; expected int"),
    ("train", {"epochs": None}, "train.epochs=None has the wrong type; expected int"),
    ("train", {"lr": True}, "train.lr=True has the wrong type; expected float"),
    ("train", {"lr": "1e-3"}, "train.lr='1e-3' has the wrong type; expected float"),
    ("train", {"resume": 1}, "train.resume=1 has the wrong type; expected bool"),
    ("train", {"resume": "yes"}, "train.resume='yes' has the wrong type; expected bool"),
    ("train", {"device": "cuda:7"}, f"train.device='cuda:7' is not allowed; use one of {DEVICES}"),
    ("train", {"device": 1}, f"train.device=1 is not allowed; use one of {DEVICES}"),
    ("train", {"schedule": None}, "train.schedule=None is not allowed; use one of 'none', 'step', 'cosine'"),
    # several problems: unknown keys first (alphabetical), then missing keys and types in field order
    ("train", {"zz": 1, "aa": 2, "epochs": "x"},
     "unknown key 'train.aa' in params.yaml; known keys of 'train': batch_size, device, epochs, eval_batch_size, "
     "eval_every, lr, min_lr, nproc, resume, schedule, seed, step_gamma, step_size, threads, weight_decay"),
    ("train", {"lr": "x", "epochs": "y"}, "train.epochs='y' has the wrong type; expected int"),
    ("train", {"lr": "x", "epochs": 0}, "train.lr='x' has the wrong type; expected float"),
    ("train", {"lr": -1}, "train.lr=-1.0 must be > 0"),
    ("model", {"checkpoint": 3}, "model.checkpoint=3 has the wrong type; expected str or null"),
    ("model", {"pretrained": 0}, "model.pretrained=0 has the wrong type; expected bool"),
    ("model", {"checkpoint_bands": "s2"},
     "model.checkpoint_bands='s2' has the wrong type; expected 'rgb' or 's2_l1c_13' or 's1_vv_vh' or a list of str"),
    ("model", {"checkpoint_bands": ["B4", "B13"]},
     "model.checkpoint_bands=['B4', 'B13']: 'B13' is not a band name; use Sentinel-2 B1, B2, B3, B4, B5, B6, B7, B8, "
     "B8A, B9, B10, B11, B12 or Sentinel-1 VV, VH"),
    ("model", {"checkpoint_bands": []}, "model.checkpoint_bands=[]: an explicit list needs at least one band"),
    ("model", {"pretrained": True, "checkpoint_bands": "s2_l1c_13"},
     "model.checkpoint_bands=s2_l1c_13 needs model.checkpoint: the local file of those weights (the hub caches hold "
     "ImageNet RGB weights only)"),
    ("model", {"pretrained": True, "checkpoint": "a.pth", "checkpoint_s1": "b.pth"},
     "model.checkpoint_s1 needs model.checkpoint_bands to name Sentinel-2 bands (e.g. s2_l1c_13), not rgb: the SAR "
     "filters come from the second file"),
    ("model", {"checkpoint_s1": 1}, "model.checkpoint_s1=1 has the wrong type; expected str or null"),
    ("seg", {"checkpoint_bands": "s2_l1c_13"}, "seg.checkpoint_bands=s2_l1c_13 needs seg.checkpoint: the local file of those weights"),
    ("seg", {"checkpoint_bands": ["B4", "B4"], "checkpoint": "a.pth"}, "seg.checkpoint_bands=['B4', 'B4']: a band is listed twice"),
    ("data", {"format": "L4S"}, "data.format='L4S' is not allowed; use one of 'zindi', 'l4s'"),
    ("data", {"optical_scale": 0}, "data.optical_scale=0.0 must be > 0 (10000 or 1)"),
    ("normalize", {"channels": 13}, "normalize.channels=13 is not allowed; use one of 12, 14, 17, 20, 28"),
    ("normalize", {"method": "minmax"}, "normalize.method='minmax' is not allowed; use one of 'standard', 'robust', 'ssl4eo'"),
    ("normalize", {"channels": 12.0}, "normalize.channels=12.0 is not allowed; use one of 12, 14, 17, 20, 28"),
    ("normalize", {"channels": "12"}, "normalize.channels='12' is not allowed; use one of 12, 14, 17, 20, 28"),
    ("head", {"threshold": "best"}, "head.threshold='best' has the wrong type; expected float or 'oof'"),
    ("head", {"threshold": True}, "head.threshold=True has the wrong type; expected float or 'oof'"),
    ("head", {"threshold": None}, "head.threshold=None has the wrong type; expected float or 'oof'"),
    ("head", {"threshold": 1}, "head.threshold=1.0 must be in (0, 1) or 'oof'"),
    ("head", {"gamma": "x"}, "head.gamma='x' has the wrong type; expected float or 'scale' or 'auto'"),
    ("head", {"kernel": "cubic"}, "head.kernel='cubic' is not allowed; use one of 'rbf', 'linear', 'poly', 'sigmoid'"),
    ("head", {"lgbm": []}, "head.lgbm=[] has the wrong type; expected a mapping"),
    ("head", {"lgbm": None}, "head.lgbm=None has the wrong type; expected a mapping"),
    ("stats_baseline", {"percentiles": [5, "50"]},
     "stats_baseline.percentiles[1]='50' has the wrong type; expected float"),
    ("stats_baseline", {"percentiles": 50}, "stats_baseline.percentiles=50 has the wrong type; expected a list of float"),
    ("seg", {"decoder_channels": [64, 32, 16, 8.0]}, "seg.decoder_channels[3]=8.0 has the wrong type; expected int"),
    ("seg", {"decoder_channels": [64, True, 16, 8]}, "seg.decoder_channels[1]=True has the wrong type; expected int"),
    ("seg", {"decoder_channels": "64"}, "seg.decoder_channels='64' has the wrong type; expected a list of int"),
    ("seg", {"decoder_channels": (64, 32, 16, 8)},
     "seg.decoder_channels=(64, 32, 16, 8) has the wrong type; expected a list of int"),
    ("seg", {"device": 1}, "seg.device=1 has the wrong type; expected str"),
    ("seg", {"encoder_depth": 6}, "seg.encoder_depth=6 must be in [3, 5]"),
    ("export_seg", {"tta": 2}, "export_seg.tta=2 must be 1, 4 or 8 (dihedral views per pixel)"),
    ("export_seg", {"tta": 8.0}, "export_seg.tta=8.0 has the wrong type; expected int"),
    ("submit", {"head": "knn"}, "submit.head: unknown head 'knn'; use one of fc, svm, lgbm, logreg"),
    ("explain", {"split": "train"}, "explain.split='train' is not allowed; use one of 'val', 'test'"),
    ("synthesize_l4s", {"haze_blue": [0.01]},
     "synthesize_l4s.haze_blue=[0.01] must be [low, high] with 0 <= low <= high <= 0.2"),
    ("l4s", {"test_split": "Test"}, "l4s.test_split='Test' is not allowed; use one of 'ValidData', 'TestData'"),
    ("folds", {"seed": 1.5}, "folds.seed=1.5 has the wrong type; expected int"),
    ("scene", {"utm_epsg": 4326}, "scene.utm_epsg=4326 is not a WGS 84 / UTM zone; use 32601-32660 (north) or 32701-32760 (south)"),
    ("scene", {"size": 64}, "scene.size=64 must be in [128, 16384] px"),
    ("map_scene", {"stride": 0}, "map_scene.stride=0 must be >= 1 pixel"),
]


@pytest.mark.parametrize(("section", "change", "message"), REFUSED, ids=[m.split(" ")[0] for *_, m in REFUSED])
def test_refused_values_name_the_key_in_one_line(section: str, change: dict[str, Any], message: str) -> None:
    with pytest.raises(ParamError) as excinfo:
        parse(section, change)
    assert str(excinfo.value) == message


def test_missing_keys_and_sections() -> None:
    mapping = base("train")
    del mapping["nproc"], mapping["epochs"]  # a field with a default must be in params.yaml too
    with pytest.raises(ParamError) as excinfo:
        parse_section(mapping, TrainParams, "train")
    assert str(excinfo.value) == "missing key 'train.epochs' in params.yaml; add it (see docs/parameters.md)"
    mapping["epochs"] = 2
    with pytest.raises(ParamError, match=r"^missing key 'train\.nproc' in params\.yaml"):
        parse_section(mapping, TrainParams, "train")
    for value in (None, [1], "x"):
        with pytest.raises(ParamError) as excinfo:
            parse_section(value, TrainParams, "train")
        assert str(excinfo.value) == f"params section 'train' must be a mapping, got {value!r}"
    with pytest.raises(ParamError) as excinfo:
        get_section({}, TrainParams, "train")
    assert str(excinfo.value) == "params.yaml has no 'train' section; add it (see docs/parameters.md)"


def test_defaults_apply_when_built_in_code() -> None:
    train = parse("train", {})
    fields = {f.name: getattr(train, f.name) for f in dataclasses.fields(TrainParams) if f.name not in ("nproc", "threads")}
    built = TrainParams(**fields)
    assert (built.nproc, built.threads) == (1, 2)
    assert SynthesizeParams().n_train == 7147
    assert SegParams(**{k: v for k, v in base("seg").items() if k not in ("resume", "nproc", "threads")}).resume is True


def test_every_section_of_the_repository_parses_with_the_annotated_types() -> None:
    for params in (ZINDI, L4S):
        for section, cls in SECTIONS.items():
            if section not in params:
                continue
            parsed = get_section(params, cls, section)
            assert dataclasses.replace(parsed) == parsed
            for field in dataclasses.fields(cls):
                value = getattr(parsed, field.name)
                if isinstance(params[section][field.name], int) and "float" in str(field.type):
                    if not isinstance(params[section][field.name], bool):
                        assert type(value) is float, (section, field.name, value)


def test_sections_stay_dataclasses_that_check_types_when_built_in_code() -> None:
    train = parse("train", {})
    assert dataclasses.is_dataclass(train) and dataclasses.asdict(train) == base("train")
    assert dataclasses.replace(train, lr=1).lr == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        train.lr = 0.1  # type: ignore[misc]
    with pytest.raises(ValueError, match="lr"):  # pydantic's ValidationError: a bug in the calling code, not params.yaml
        dataclasses.replace(train, lr="0.1")
    with pytest.raises(ValueError, match="unexpected"):
        TrainParams(**{**dataclasses.asdict(train), "learning_rate": 0.1})
