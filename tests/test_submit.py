"""Submission files: header and row order copied from SampleSubmission.csv, 0/1 labels only."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import make_zindi

from landslide.normalize import FoldsParams, NormalizeParams, run_normalize
from landslide.submit import SubmitParams, run_submit


def prepare(tmp_path: Path, **dataset) -> tuple[Path, dict]:
    root = tmp_path / "zindi"
    info = make_zindi(root, n_train=15, n_test=9, n_pos=5, **dataset)
    out = tmp_path / "n"
    run_normalize(root, NormalizeParams("standard", 12), FoldsParams(2, 0), out / "train.h5", out / "test.h5", out / "answers.csv")
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
