"""The Zindi loader: real layout variants load; every kind of bad input stops `normalize` cleanly."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import make_zindi, write_csv
from helpers import files_under, run_stage_script, write_params

from landslide.data import load_images, read_index
from landslide.errors import DataError


def test_loader_reads_layout_nested_and_float64(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root, dtype="float64", nested=True)
    index = read_index(root)
    assert index.train_ids == info["train_ids"]
    np.testing.assert_array_equal(index.train_labels, info["labels"])
    np.testing.assert_array_equal(index.test_labels, info["test_labels"])
    assert index.submission_columns == ["ID", "Target"]
    assert index.submission_ids == list(reversed(info["test_ids"]))
    images = load_images(root, "train_data", index.train_ids, "Train.csv")
    assert images.dtype == np.float32 and images.shape == (20, 12, 64, 64)
    first = info["arrays"][index.train_ids[0]]
    np.testing.assert_allclose(images[0], first.transpose(2, 0, 1).astype(np.float32))


def test_loader_without_optional_files(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    make_zindi(root, answers=False, sample=False)
    index = read_index(root)
    assert index.test_labels is None and index.submission_ids is None and index.submission_columns is None


def _corrupt_npy(root: Path, info: dict, how: str) -> Path:
    path = root / "train_data" / f"{info['train_ids'][3]}.npy"
    if how == "shape":
        np.save(path, np.zeros((64, 64, 3), np.float32))
    elif how == "string":
        np.save(path, np.full((64, 64, 12), "x"))
    elif how == "nan":
        bad = np.zeros((64, 64, 12), np.float32)
        bad[5, 5, 5] = np.nan
        np.save(path, bad)
    elif how == "inf":
        bad = np.zeros((64, 64, 12), np.float64)
        bad[1, 2, 3] = 1e300  # overflows float32
        np.save(path, bad)
    elif how == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "pickle":
        arr = np.empty((64, 64, 12), dtype=object)
        arr[...] = 0.0
        np.save(path, arr, allow_pickle=True)
    elif how == "garbage":
        path.write_bytes(pickle.dumps({"not": "an array"}))
    return path


def _rewrite_train_csv(root: Path, rows: list[list[object]], header: list[str] | None = None) -> None:
    write_csv(root / "Train.csv", header or ["ID", "label"], rows)


BAD_CASES = {
    "missing train csv": (lambda root, info: (root / "Train.csv").unlink(), "Train.csv not found"),
    "missing test csv": (lambda root, info: (root / "Test.csv").unlink(), "Test.csv not found"),
    "missing column": (
        lambda root, info: _rewrite_train_csv(root, [[i, 0] for i in info["train_ids"]], ["ID", "target"]),
        "has no column 'label'",
    ),
    "empty train": (lambda root, info: _rewrite_train_csv(root, []), "lists no training images"),
    "missing npy": (
        lambda root, info: (root / "train_data" / f"{info['train_ids'][2]}.npy").unlink(),
        "ID_TR0002.npy not found",
    ),
    "wrong shape": (lambda root, info: _corrupt_npy(root, info, "shape"), "ID_TR0003.npy has shape (64, 64, 3)"),
    "not numeric": (lambda root, info: _corrupt_npy(root, info, "string"), "not a real number type"),
    "nan": (lambda root, info: _corrupt_npy(root, info, "nan"), "ID_TR0003.npy contains 1 NaN/Inf"),
    "inf": (lambda root, info: _corrupt_npy(root, info, "inf"), "ID_TR0003.npy contains 1 NaN/Inf"),
    "truncated": (lambda root, info: _corrupt_npy(root, info, "truncated"), "ID_TR0003.npy is truncated"),
    "needs pickle": (lambda root, info: _corrupt_npy(root, info, "pickle"), "needs pickle"),
    "not npy": (lambda root, info: _corrupt_npy(root, info, "garbage"), "ID_TR0003.npy"),
    "duplicate id": (
        lambda root, info: _rewrite_train_csv(
            root, [[i, int(l)] for i, l in zip(info["train_ids"], info["labels"])] + [[info["train_ids"][0], 0]]
        ),
        "ID_TR0000 appears twice",
    ),
    "id in both splits": (
        lambda root, info: write_csv(root / "Test.csv", ["ID"], [[i] for i in info["test_ids"]] + [[info["train_ids"][1]]]),
        "ID_TR0001 is in both Train.csv and Test.csv",
    ),
    "bad label": (
        lambda root, info: _rewrite_train_csv(root, [[i, 2 if k == 4 else 0] for k, i in enumerate(info["train_ids"])]),
        "label '2' is not 0 or 1",
    ),
    "path traversal": (
        lambda root, info: _rewrite_train_csv(
            root, [["../../etc/passwd" if k == 0 else i, int(l)] for k, (i, l) in enumerate(zip(info["train_ids"], info["labels"]))]
        ),
        "is not a plain file name",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_stops_normalize(case: str, tmp_path: Path, monkeypatch, capsys) -> None:
    root = tmp_path / "data" / "zindi"
    info = make_zindi(root, n_train=15, n_test=5, n_pos=5)
    corrupt, expected = BAD_CASES[case]
    corrupt(root, info)
    write_params(tmp_path / "params.yaml", data={"dir": "data/zindi"})
    before = files_under(tmp_path)
    code, err = run_stage_script("normalize", tmp_path, monkeypatch, capsys)
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert expected in lines[0]
    assert lines[0].startswith("normalize: error: ")
    assert files_under(tmp_path) == before  # no output and no partial file


@pytest.mark.parametrize(
    ("section", "values", "expected"),
    [
        ("normalize", {"method": "foo"}, "normalize.method='foo' is not allowed"),
        ("normalize", {"channels": 13}, "normalize.channels=13 is not allowed"),
        ("normalize", {"channels": "12"}, "normalize.channels='12' is not allowed"),
        ("normalize", {"metod": "robust"}, "unknown key 'normalize.metod'"),
        ("folds", {"n_splits": 1}, "folds.n_splits=1 must be >= 2"),
        ("folds", {"seed": "x"}, "folds.seed='x' has the wrong type"),
        ("data", {"dir": "../outside"}, "is outside the repository"),
    ],
)
def test_bad_params_stop_normalize(section, values, expected, tmp_path: Path, monkeypatch, capsys) -> None:
    make_zindi(tmp_path / "data" / "zindi")
    write_params(tmp_path / "params.yaml", **{"data": {"dir": "data/zindi"}, section: values})
    before = files_under(tmp_path)
    code, err = run_stage_script("normalize", tmp_path, monkeypatch, capsys)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert files_under(tmp_path) == before


def test_answers_must_match_test_ids(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root)
    write_csv(root / "test_labels.csv", ["ID", "label"], [[i, 0] for i in info["test_ids"][:-1]])
    with pytest.raises(DataError, match="test_labels.csv and Test.csv list different IDs"):
        read_index(root)


def test_duplicate_npy_at_two_depths_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root)
    nested = root / "train_data" / "train_data"
    nested.mkdir()
    first = info["train_ids"][0]
    (nested / f"{first}.npy").write_bytes((root / "train_data" / f"{first}.npy").read_bytes())
    index = read_index(root)
    with pytest.raises(DataError, match=f"{first}.npy exists twice"):
        load_images(root, "train_data", index.train_ids, "Train.csv")
