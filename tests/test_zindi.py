"""The Zindi loader: real layout variants load; every kind of bad input stops `normalize` cleanly."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from conftest import make_zindi, write_csv
from helpers import files_under, run_stage_script, write_params

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.patches import index_npy_files, load_images, load_patch
from landslide_dvc.formats.zindi import read_index


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


def _dangle(path: Path) -> None:
    """Replace ``path`` (file or folder) by a link to a target that does not exist."""
    if path.is_dir():
        path.rename(path.with_name(path.name + "_gone"))
    else:
        path.unlink()
    path.symlink_to(path.with_name("missing_target"))


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
    "conflicting labels": (
        lambda root, info: _rewrite_train_csv(
            root, [[i, int(l)] for i, l in zip(info["train_ids"], info["labels"])] + [[info["train_ids"][0], 1 - info["labels"][0]]]
        ),
        "ID ID_TR0000 is listed with label",
    ),
    "empty csv": (lambda root, info: (root / "Train.csv").write_bytes(b""), "Train.csv is empty"),
    "blank csv": (lambda root, info: (root / "Test.csv").write_text("\n \r\n"), "Test.csv is empty"),
    "header-only test csv": (lambda root, info: (root / "Test.csv").write_text("ID\n"), "Test.csv lists no test images"),
    "workbook": (lambda root, info: (root / "Train.csv").write_bytes(b"PK\x03\x04rest"), "Train.csv is a spreadsheet workbook"),
    "utf-16 without bom": (
        lambda root, info: (root / "Test.csv").write_bytes("ID\nID_TE0000\n".encode("utf-16-le")),
        "Test.csv contains NUL bytes",
    ),
    "ambiguous column": (
        lambda root, info: _rewrite_train_csv(root, [[i, 0, 0] for i in info["train_ids"]], ["ID", "label", "Label"]),
        "has 2 columns named 'label'",
    ),
    "missing id column": (
        lambda root, info: write_csv(root / "Test.csv", ["name"], [[i] for i in info["test_ids"]]),
        "Test.csv has no column 'ID'",
    ),
    "conflicting answers": (
        lambda root, info: write_csv(
            root / "test_labels.csv", ["ID", "label"],
            [[i, int(l)] for i, l in zip(info["test_ids"], info["test_labels"])] + [[info["test_ids"][1], 1 - info["test_labels"][1]]],
        ),
        "test_labels.csv: ID ID_TE0001 is listed with label",
    ),
    "sample with three columns": (
        lambda root, info: write_csv(root / "SampleSubmission.csv", ["ID", "Target", "x"], [[i, 0, 0] for i in info["test_ids"]]),
        "SampleSubmission.csv header ID,Target,x is not 'ID,<target column>'",
    ),
    "sample misses an id": (
        lambda root, info: write_csv(root / "SampleSubmission.csv", ["ID", "Target"], [[i, 0] for i in info["test_ids"][1:]]),
        "SampleSubmission.csv and Test.csv list different IDs (e.g. ID_TE0000)",
    ),
    "dangling symlink": (lambda root, info: _dangle(root / "train_data" / f"{info['train_ids'][3]}.npy"), "(a dangling link)"),
    "dangling folder link": (lambda root, info: _dangle(root / "test_data"), "test_data is a link to"),
    "channels first": (
        lambda root, info: np.save(root / "train_data" / f"{info['train_ids'][3]}.npy", np.zeros((12, 64, 64))),
        "(channels first?",
    ),
    "complex values": (
        lambda root, info: np.save(root / "train_data" / f"{info['train_ids'][3]}.npy", np.zeros((64, 64, 12), np.complex64)),
        "has dtype complex64, not a real number type",
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
        ("folds", {"ids": [0]}, "folds.ids=[0] must be 0, 1, ..., K-1 with K >= 2"),
        ("folds", {"ids": [0, 2]}, "folds.ids=[0, 2] must be 0, 1, ..., K-1"),
        ("folds", {"seed": "x"}, "folds.seed='x' has the wrong type"),
        ("data", {"dir": "../outside"}, "is outside the repository"),
        ("data", {"optical_scale": 0}, "data.optical_scale=0.0 must be > 0"),
        ("data", {"optical_scale": "dn"}, "data.optical_scale='dn' has the wrong type"),
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




# --- Files as users actually have them -------------------------------------------------------


def _train_csv_text(info: dict, *, header: str = "ID,label", sep: str = ",", newline: str = "\n",
                    label: str = "{}", row: str = "{id}{sep}{label}") -> str:
    lines = [header] + [row.format(id=i, sep=sep, label=label.format(l)) for i, l in zip(info["train_ids"], info["labels"])]
    return newline.join(lines) + newline


CSV_QUIRKS = {
    "utf-8 with bom": lambda info: _train_csv_text(info).encode("utf-8-sig"),
    "utf-16 with bom (Excel 'Unicode text')": lambda info: _train_csv_text(info, sep="\t", header="ID\tlabel").encode("utf-16"),
    "utf-16 big-endian with bom": lambda info: b"\xfe\xff" + _train_csv_text(info).encode("utf-16-be"),
    "cp1252 note column": lambda info: _train_csv_text(
        info, header="ID,label,note", row="{id}{sep}{label}{sep}pente raide \u2013 \u00e9boulement"
    ).encode("cp1252"),
    "latin-1 note column": lambda info: _train_csv_text(info, header="ID,label,note", row="{id}{sep}{label}{sep}\u00e9\u0081").encode("latin-1"),
    "crlf": lambda info: _train_csv_text(info, newline="\r\n").encode(),
    "cr only (old Mac)": lambda info: _train_csv_text(info, newline="\r").encode(),
    "semicolon, decimal comma labels": lambda info: _train_csv_text(info, sep=";", header="ID;label", label="{},0").encode(),
    "tab delimited": lambda info: _train_csv_text(info, sep="\t", header="ID\tlabel").encode(),
    "header case": lambda info: _train_csv_text(info, header="id,Label").encode(),
    "labels written 1.0": lambda info: _train_csv_text(info, label="{}.0").encode(),
    "reordered and extra columns": lambda info: _train_csv_text(
        info, header="region,label,ID,notes", row="r1{sep}{label}{sep}{id}{sep}x"
    ).encode(),
    "surrounding whitespace and quotes": lambda info: _train_csv_text(
        info, header=" ID , label ", row='  "{id}" {sep}  {label} '
    ).encode(),
    "blank and empty-cell trailing lines": lambda info: (_train_csv_text(info) + "\n,\n , \n\n").encode(),
}


@pytest.mark.parametrize("quirk", sorted(CSV_QUIRKS))
def test_csv_files_as_spreadsheets_and_downloads_write_them(quirk: str, tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root)
    (root / "Train.csv").write_bytes(CSV_QUIRKS[quirk](info))
    index = read_index(root)
    assert index.train_ids == info["train_ids"]
    np.testing.assert_array_equal(index.train_labels, info["labels"])
    assert index.notices == ()


def test_sample_submission_header_case_and_column_order_are_kept(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root)
    (root / "SampleSubmission.csv").write_text("target;id\r\n" + "".join(f"0;{i}\r\n" for i in info["test_ids"]))
    index = read_index(root)
    assert index.submission_columns == ["target", "id"]
    assert index.submission_ids == info["test_ids"]


def test_answers_csv_is_read_with_the_same_tolerance(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root)
    text = "Label;Id\r\n" + "".join(f"{l},0;{i}\r\n" for i, l in zip(info["test_ids"], info["test_labels"]))
    (root / "test_labels.csv").write_bytes(text.encode("utf-8-sig"))
    np.testing.assert_array_equal(read_index(root).test_labels, info["test_labels"])


# --- Repeated IDs ------------------------------------------------------------------------------


def test_repeated_test_id_is_loaded_once_and_listed_twice(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root, n_test=6, repeat_test=2)
    repeated = info["test_ids"][2]
    index = read_index(root)
    assert index.test_ids == info["test_ids"]  # distinct, in Test.csv order
    assert index.test_rows == info["test_rows"] and len(index.test_rows) == 7
    assert index.submission_ids == info["sample_rows"] and index.submission_order == info["sample_rows"]
    assert index.notices == (f"Test.csv lists {repeated} twice; scored once, written twice",)
    images = load_images(root, "test_data", index.test_ids, "Test.csv")
    assert images.shape[0] == 6


def test_repeated_test_id_without_sample_file_follows_test_csv(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root, n_test=5, repeat_test=0, sample=False)
    index = read_index(root)
    assert index.submission_ids is None
    assert index.submission_order == info["test_rows"] == [info["test_ids"][0]] + info["test_ids"]
    assert index.submission_header == ["ID", "Target"]


def test_repeat_only_in_sample_file_is_written_as_listed(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root, n_test=4)
    rows = info["test_ids"] + [info["test_ids"][1]] * 2
    write_csv(root / "SampleSubmission.csv", ["ID", "Target"], [[i, 0] for i in rows])
    index = read_index(root)
    assert index.submission_order == rows
    assert index.notices == (f"SampleSubmission.csv lists {info['test_ids'][1]} 3 times; scored once, written 3 times",)


def test_several_repeated_test_ids_give_one_line(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root, n_test=5, sample=False)
    ids = info["test_ids"]
    write_csv(root / "Test.csv", ["ID"], [[i] for i in ids + ids[:2]])
    (notice,) = read_index(root).notices
    assert notice == f"Test.csv lists 2 IDs more than once ({ids[0]} twice, {ids[1]} twice); each scored once, written once per listed row"


def test_repeated_train_id_with_the_same_label_is_kept_once(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root)
    rows = [[i, int(l)] for i, l in zip(info["train_ids"], info["labels"])]
    write_csv(root / "Train.csv", ["ID", "label"], rows[:5] + [rows[3]] + rows[5:])
    index = read_index(root)
    assert index.train_ids == info["train_ids"]
    np.testing.assert_array_equal(index.train_labels, info["labels"])
    assert index.notices == (f"Train.csv lists {info['train_ids'][3]} twice; kept once (same label)",)


def test_conflicting_train_labels_name_the_id_and_both_rows(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root)
    rows = [[i, int(l)] for i, l in zip(info["train_ids"], info["labels"])]
    label = rows[3][1]
    write_csv(root / "Train.csv", ["ID", "label"], rows + [[rows[3][0], 1 - label]])
    with pytest.raises(DataError) as err:
        read_index(root)
    assert str(err.value) == (
        f"{root / 'Train.csv'}: ID {rows[3][0]} is listed with label {label} (row 5) and label {1 - label} "
        f"(row {len(rows) + 2}); keep the row with the right label"
    )


def test_repeated_answers_with_the_same_label_are_accepted(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root, repeat_test=1)
    write_csv(root / "test_labels.csv", ["ID", "label"],
              [[i, int(info["test_labels"][info["test_ids"].index(i)])] for i in info["test_rows"]])
    index = read_index(root)
    np.testing.assert_array_equal(index.test_labels, info["test_labels"])
    assert any(n.startswith(f"test_labels.csv lists {info['test_ids'][1]} twice") for n in index.notices)


# --- .npy files: dtypes, byte orders, links ----------------------------------------------------


@pytest.mark.parametrize("dtype", ["<i2", "<u2", "<i4", ">i4", "<f2", "<f4", ">f4", "<f8", ">f8"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_npy_of_any_real_dtype_byte_order_and_memory_order(dtype: str, order: str, tmp_path: Path) -> None:
    values = np.random.default_rng(0).integers(0, 1000, size=(64, 64, 12))
    path = tmp_path / "p.npy"
    np.save(path, np.asarray(values, dtype=np.dtype(dtype), order=order))
    patch = load_patch(path)
    assert patch.dtype == np.float32 and patch.shape == (64, 64, 12)
    np.testing.assert_array_equal(patch, values.astype(np.float32))


def _link_everything_into_cache(folder: Path, cache: Path, how: str) -> None:
    """What `dvc checkout` does with cache.type symlink/hardlink: data files become read-only links."""
    cache.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.rglob("*.npy")):
        target = cache / f"{len(list(cache.iterdir())):04d}"
        path.rename(target)
        target.chmod(0o444)
        if how == "symlink":
            path.symlink_to(target)
        else:
            os.link(target, path)


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_dvc_linked_files_load(how: str, tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root, nested=True)
    _link_everything_into_cache(root / "train_data", tmp_path / ".dvc" / "cache", how)
    index = read_index(root)
    images = load_images(root, "train_data", index.train_ids, "Train.csv")
    first = info["arrays"][index.train_ids[0]]
    np.testing.assert_array_equal(images[0], first.transpose(2, 0, 1))


def test_symlinked_data_folders_and_link_loops(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root)
    disk = tmp_path / "disk"
    disk.mkdir()
    # test_data itself is a link; train_data holds a link to a nested folder elsewhere
    (root / "test_data").rename(disk / "test_data")
    (root / "test_data").symlink_to(disk / "test_data", target_is_directory=True)
    (root / "train_data").rename(disk / "train_data")
    (root / "train_data").mkdir()
    (root / "train_data" / "train_data").symlink_to(disk / "train_data", target_is_directory=True)
    # link loops below them are walked once
    (disk / "train_data" / "loop").symlink_to(disk / "train_data", target_is_directory=True)
    (disk / "test_data" / "nested").mkdir()
    (disk / "test_data" / "nested" / "up").symlink_to(root / "test_data", target_is_directory=True)
    assert sorted(index_npy_files(root / "train_data")) == sorted(info["train_ids"])
    assert sorted(index_npy_files(root / "test_data")) == sorted(info["test_ids"])
    index = read_index(root)
    images = load_images(root, "train_data", index.train_ids, "Train.csv")
    np.testing.assert_array_equal(images[-1], info["arrays"][index.train_ids[-1]].transpose(2, 0, 1))
    assert load_images(root, "test_data", index.test_ids, "Test.csv").shape[0] == len(info["test_ids"])


def test_identical_copies_at_two_depths_are_one_image(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root)
    nested = root / "train_data" / "train_data"
    nested.mkdir()
    for sample_id in info["train_ids"]:  # unpacked both flat and nested
        (nested / f"{sample_id}.npy").write_bytes((root / "train_data" / f"{sample_id}.npy").read_bytes())
    index = read_index(root)
    images = load_images(root, "train_data", index.train_ids, "Train.csv")
    np.testing.assert_array_equal(images[0], info["arrays"][info["train_ids"][0]].transpose(2, 0, 1))


def test_different_copies_at_two_depths_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "zindi"
    info = make_zindi(root)
    nested = root / "train_data" / "train_data"
    nested.mkdir()
    first = info["train_ids"][0]
    np.save(nested / f"{first}.npy", np.zeros((64, 64, 12), np.float32))
    index = read_index(root)
    with pytest.raises(DataError, match=f"{first}.npy exists twice with different contents"):
        load_images(root, "train_data", index.train_ids, "Train.csv")
