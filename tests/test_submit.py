"""Submission files: header and row order copied from SampleSubmission.csv (else Test.csv), one row per
listed row (an ID listed twice is written twice with one label), 0/1 labels only."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import make_zindi
from helpers import run_stage_script, write_params

from landslide_dvc.pipeline.normalize import FoldsParams, NormalizeParams, run_normalize
from landslide_dvc.pipeline.submit import SubmitParams, run_submit


def prepare(tmp_path: Path, edit: Callable[[Path, dict], None] | None = None, **dataset) -> tuple[Path, dict]:
    root = tmp_path / "zindi"
    info = make_zindi(root, n_train=15, n_test=9, n_pos=5, **dataset)
    if edit is not None:
        edit(root, info)
    out = tmp_path / "n"
    run_normalize(root, NormalizeParams("standard", 12), FoldsParams(list(range(2)), 0), out / "train.h5", out / "test.h5", out / "answers.csv", optical_scale=10000.0)
    scores = np.linspace(0.05, 0.95, 9)
    with h5py.File(tmp_path / "svm.h5", "w") as h5:
        h5.attrs["threshold"] = 0.5
        h5.create_dataset("test/ids", data=np.array(info["test_ids"], dtype=object), dtype=h5py.string_dtype())
        h5.create_dataset("test/score", data=scores)
    return out, {**info, "scores": scores}


def submit(tmp_path: Path, out: Path) -> tuple[list[str], list[list[str]], dict]:
    metrics = run_submit(
        SubmitParams("svm"), predictions_path=tmp_path / "svm.h5", test_path=out / "test.h5",
        answers_path=out / "answers.csv", out_submission=tmp_path / "sub.csv", out_metrics=tmp_path / "sub.json",
    )
    with (tmp_path / "sub.csv").open() as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:], metrics


@pytest.mark.parametrize("header", [("ID", "Target"), ("ID", "label")])
def test_sample_submission_header_and_order_are_copied(tmp_path: Path, header: tuple[str, str]) -> None:
    out, info = prepare(tmp_path, sample_header=header)
    got_header, rows, metrics = submit(tmp_path, out)
    assert got_header == list(header)
    assert [r[0] for r in rows] == list(reversed(info["test_ids"]))  # the sample file's order
    expected = dict(zip(info["test_ids"], (info["scores"] >= 0.5).astype(int)))
    assert all(r[1] in ("0", "1") and int(r[1]) == expected[r[0]] for r in rows)
    assert metrics["n_test"] == 9 and metrics["n_positive"] == int((info["scores"] >= 0.5).sum())
    assert "test" in metrics  # the synthetic-style dataset has answers


def test_without_sample_file_uses_test_csv_order_and_default_header(tmp_path: Path) -> None:
    out, info = prepare(tmp_path, sample=False, answers=False)
    header, rows, metrics = submit(tmp_path, out)
    assert header == ["ID", "Target"]
    assert [r[0] for r in rows] == info["test_ids"]
    assert "test" not in metrics


def test_sample_columns_in_another_order_and_case(tmp_path: Path) -> None:
    def target_first(root: Path, info: dict) -> None:
        (root / "SampleSubmission.csv").write_text("target,Id\n" + "".join(f"0,{i}\n" for i in reversed(info["test_ids"])))

    out, info = prepare(tmp_path, edit=target_first)
    header, rows, _ = submit(tmp_path, out)
    assert header == ["target", "Id"]
    expected = dict(zip(info["test_ids"], (info["scores"] >= 0.5).astype(int)))
    assert [r[1] for r in rows] == list(reversed(info["test_ids"]))
    assert all(int(r[0]) == expected[r[1]] for r in rows)


def write_predictions(repo: Path, head: str = "svm") -> dict[str, float]:
    """A head's predictions file over test.h5's distinct images, as fit_head writes it."""
    with h5py.File(repo / "data/normalized/test.h5") as h5:
        test_ids = [s.decode() for s in h5["ids"][()]]
    scores = np.linspace(0.9, 0.1, len(test_ids))
    path = repo / "data/heads" / f"{head}.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as h5:
        h5.attrs["threshold"] = 0.5
        h5.create_dataset("test/ids", data=np.array(test_ids, dtype=object), dtype=h5py.string_dtype())
        h5.create_dataset("test/score", data=scores)
    return dict(zip(test_ids, scores))


@pytest.mark.parametrize("with_sample", [True, False], ids=["sample file", "no sample file"])
def test_folder_with_the_real_quirks_through_normalize_and_submit(
    with_sample: bool, tmp_path: Path, monkeypatch, capsys
) -> None:
    """Nested folders, float64 digital numbers, a test ID listed twice, an ID,Target sample file."""
    root = tmp_path / "data" / "zindi"
    info = make_zindi(
        root, n_train=15, n_test=9, n_pos=5, dtype="float64", nested=True, optical_scale=10000.0,
        repeat_test=4, sample=with_sample,
    )
    repeated = info["test_ids"][4]
    write_params(tmp_path / "params.yaml", data={"dir": "data/zindi", "optical_scale": 10000}, submit={"head": "svm"})

    code, err = run_stage_script("normalize", tmp_path, monkeypatch, capsys)
    assert code == 0, err
    assert err.strip() == f"normalize: Test.csv lists {repeated} twice; scored once, written twice"
    with h5py.File(tmp_path / "data/normalized/test.h5") as h5:
        assert [s.decode() for s in h5["ids"][()]] == info["test_ids"]  # each image stored once
        assert h5["images"].shape[0] == 9
        listed = info["sample_rows"] if with_sample else info["test_rows"]
        assert [s.decode() for s in h5["submission_ids"][()]] == listed
        assert h5.attrs["optical_scale"] == 10000.0

    scores = write_predictions(tmp_path)
    code, err = run_stage_script("submit", tmp_path, monkeypatch, capsys)
    assert code == 0, err
    with (tmp_path / "submissions/submission.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["ID", "Target"]
    assert [r[0] for r in rows[1:]] == listed and len(rows) - 1 == 10  # one row per listed row
    assert all(int(r[1]) == int(scores[r[0]] >= 0.5) for r in rows[1:])
    repeats = [r for r in rows[1:] if r[0] == repeated]
    assert len(repeats) == 2 and repeats[0] == repeats[1]
    metrics = json.loads((tmp_path / "metrics/submit.json").read_text())
    assert metrics["n_rows"] == 10 and metrics["n_test"] == 9
    assert "test" in metrics  # scored on the 9 distinct images against their answers
