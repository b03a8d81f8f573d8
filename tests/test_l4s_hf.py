"""Landslide4Sense in the Hugging Face layout (`ibm-nasa-geospatial/Landslide4sense`: images/{train,
validation,test}/image_N.h5 + annotations/{...}/mask_N.h5): read like the release, detected from the
folders, the release's bad-input rules, and a folder with both layouts or neither refused."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import files_under, run_stage_script
from test_l4s import BAD_CASES, l4s_params, make_l4s, normalize_error

from landslide_dvc.core.errors import DataError
from landslide_dvc.formats.l4s import detect_layout, load_l4s_split

# the release's split -> the Hugging Face copy's, written out here rather than taken from the loader
HF_NAMES = {"TrainData": "train", "ValidData": "validation", "TestData": "test"}


def to_hugging_face(root: Path) -> None:
    """Rearrange a release-layout folder in place: TrainData/img -> images/train, TrainData/mask -> annotations/train, ..."""
    for split, name in HF_NAMES.items():
        for release_dir, hf_dir in (("img", "images"), ("mask", "annotations")):
            source = root / split / release_dir
            if source.is_dir():
                (root / hf_dir).mkdir(exist_ok=True)
                source.rename(root / hf_dir / name)
        if (root / split).is_dir():
            (root / split).rmdir()


def hf_path(text: str) -> str:
    """A release path in an expected message, as the Hugging Face layout names it."""
    for split, name in HF_NAMES.items():
        text = text.replace(f"{split}/img", f"images/{name}").replace(f"{split}/mask", f"annotations/{name}")
    return text


def release_and_hf(tmp_path: Path, **kwargs: object) -> tuple[Path, Path]:
    """The same small dataset twice: ``release/`` as released and ``hf/`` as on Hugging Face."""
    release, hf = tmp_path / "release", tmp_path / "hf"
    make_l4s(release, **kwargs)  # type: ignore[arg-type]
    shutil.copytree(release, hf)
    to_hugging_face(hf)
    return release, hf


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def test_hf_layout_reads_to_the_same_splits_as_the_release(tmp_path: Path) -> None:
    release, hf = release_and_hf(tmp_path, n_train=11)
    assert sorted(p.name for p in hf.iterdir()) == ["annotations", "images"]
    assert (hf / "images" / "validation" / "image_4.h5").is_file()
    assert (hf / "annotations" / "test" / "mask_2.h5").is_file()
    for split, name in HF_NAMES.items():
        a = load_l4s_split(release, split, masks_required=split == "TrainData")
        b = load_l4s_split(hf, split, masks_required=split == "TrainData")
        assert b.ids == a.ids
        np.testing.assert_array_equal(b.images, a.images)
        assert b.images.dtype == a.images.dtype == np.float32
        assert a.masks is not None and b.masks is not None
        np.testing.assert_array_equal(b.masks, a.masks)
        assert a.folder == release / split and b.folder == hf / "images" / name
    assert load_l4s_split(hf, "TrainData", masks_required=True).ids[-1] == "image_11"


def test_hf_layout_masks_optional_outside_train(tmp_path: Path) -> None:
    _, hf = release_and_hf(tmp_path, eval_masks=False)
    assert not (hf / "annotations" / "validation").exists()
    assert load_l4s_split(hf, "ValidData", masks_required=False).masks is None
    assert load_l4s_split(hf, "TestData", masks_required=False).masks is None
    assert load_l4s_split(hf, "TrainData", masks_required=True).masks is not None


def test_normalize_writes_the_same_outputs_from_either_layout(tmp_path: Path, monkeypatch, capsys) -> None:
    make_l4s(tmp_path / "release" / "data" / "l4s", n_train=12, n_valid=4)
    shutil.copytree(tmp_path / "release", tmp_path / "hf")
    to_hugging_face(tmp_path / "hf" / "data" / "l4s")
    written = {}
    for name in ("release", "hf"):
        work = tmp_path / name
        l4s_params(work / "params.yaml", data={"dir": "data/l4s"}, folds={"ids": [0, 1]}, normalize={"channels": 17})
        code, err = run_stage_script("normalize", work, monkeypatch, capsys)
        assert code == 0, err
        written[name] = work
    outputs = [name for name in files_under(written["release"]) if not name.startswith("data/l4s/")]
    assert "data/normalized/train.h5" in outputs
    assert outputs == [name for name in files_under(written["hf"]) if not name.startswith("data/l4s/")]
    for name in outputs:  # byte for byte: nothing downstream can tell which layout was read
        assert (written["release"] / name).read_bytes() == (written["hf"] / name).read_bytes(), name
    with h5py.File(written["hf"] / "data" / "normalized" / "test.h5") as h5:
        assert h5.attrs["split"] == "ValidData"


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------
def test_detect_layout(tmp_path: Path) -> None:
    release, hf = release_and_hf(tmp_path)
    assert detect_layout(release) == "release"
    assert detect_layout(hf) == "huggingface"
    shutil.rmtree(hf / "images")
    assert detect_layout(hf) == "huggingface"  # annotations/ alone: the Hugging Face layout, missing its images
    with pytest.raises(DataError, match=r"images/train not found; data.dir holds the Hugging Face layout"):
        load_l4s_split(hf, "TrainData", masks_required=True)


def test_a_folder_with_both_layouts_is_refused(tmp_path: Path) -> None:
    release, hf = release_and_hf(tmp_path)
    shutil.copytree(hf / "images", release / "images")
    with pytest.raises(DataError) as err:
        load_l4s_split(release, "TrainData", masks_required=True)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{release} holds both Landslide4Sense layouts (release: TrainData/, ValidData/, "
                              f"TestData/; Hugging Face: images/)"), message
    assert message.endswith("keep one: move the other out of data.dir")


def test_a_folder_with_neither_layout_is_refused(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()  # an unpacked archive one level too deep, say
    with pytest.raises(DataError) as err:
        detect_layout(tmp_path)
    assert str(err.value) == (
        f"{tmp_path} holds no Landslide4Sense layout (looked for the release's TrainData/, ValidData/, TestData/ "
        f"and the Hugging Face copy's images/, annotations/); point data.dir at the folder that holds them"
    )


def test_normalize_refuses_both_layouts_with_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    data = tmp_path / "data" / "l4s"
    make_l4s(data)
    shutil.copytree(data / "TrainData" / "mask", data / "annotations" / "train")
    l4s_params(tmp_path / "params.yaml", data={"dir": "data/l4s"}, folds={"ids": [0, 1]})
    before = files_under(tmp_path)
    code, err = run_stage_script("normalize", tmp_path, monkeypatch, capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1, err
    assert "data/l4s holds both Landslide4Sense layouts" in err
    assert files_under(tmp_path) == before


# ---------------------------------------------------------------------------------------------
# Bad inputs: every case of the release, in the Hugging Face layout
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_hf_input_stops_normalize(case: str, tmp_path: Path, monkeypatch, capsys) -> None:
    data = tmp_path / "data" / "l4s"
    make_l4s(data)
    corrupt, expected = BAD_CASES[case]
    corrupt(data)  # broken as in the release's test, then laid out as on Hugging Face
    to_hugging_face(data)
    line = normalize_error(tmp_path, monkeypatch, capsys)
    assert hf_path(expected) in line, line
    assert "TrainData/" not in line and "ValidData/" not in line, line  # paths of the layout read


def test_hf_test_split_of_another_shape_names_the_hf_folders(tmp_path: Path, monkeypatch, capsys) -> None:
    data = tmp_path / "data" / "l4s"
    make_l4s(data)
    to_hugging_face(data)
    for path in (data / "images" / "validation").glob("*.h5"):
        with h5py.File(path, "w") as h5:
            h5.create_dataset("img", data=np.zeros((20, 20, 14), np.float32))
    for path in (data / "annotations" / "validation").glob("*.h5"):
        with h5py.File(path, "w") as h5:
            h5.create_dataset("mask", data=np.zeros((20, 20), np.uint8))
    l4s_params(tmp_path / "params.yaml", data={"dir": "data/l4s"}, folds={"ids": [0, 1]})
    code, err = run_stage_script("normalize", tmp_path, monkeypatch, capsys)
    assert code == 1
    assert "images/validation: images of shape (14, 20, 20) (bands, H, W) differ from" in err
    assert "images/train's (14, 16, 16)" in err
