"""metrics/summary.json: the headline figures, read from the detailed metrics files under one set of names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from landslide_dvc.core.errors import DataError
from landslide_dvc.pipeline.summary import run_summary

MAP = {"threshold": 0.85, "pixel": {"f1": 0.60214, "precision": 0.5}, "objects": {"recall": 0.38983, "precision": 0.35849}}


def write(path: Path, content: dict) -> Path:
    path.write_text(json.dumps(content))
    return path


def test_zindi_summary_holds_the_submitted_heads_and_the_maps_figures(tmp_path: Path) -> None:
    head = write(tmp_path / "svm.json", {"cv": {"f1": 0.735412, "precision": 0.9}, "test": {"f1": 0.72973}})
    out = tmp_path / "metrics" / "summary.json"
    out.parent.mkdir()
    summary = run_summary(head_metrics=head, seg_metrics=None, map_metrics=write(tmp_path / "map.json", MAP), out=out)
    expected = {"cv_f1": 0.7354, "test_f1": 0.7297, "map_pixel_f1": 0.6021, "map_obj_recall": 0.3898, "map_obj_precision": 0.3585}
    assert summary == expected
    assert json.loads(out.read_text()) == expected
    assert list(json.loads(out.read_text())) == list(expected)  # the order `dvc exp show` prints


def test_l4s_summary_uses_the_same_map_names(tmp_path: Path) -> None:
    seg = write(tmp_path / "seg.json", {"pixel_f1": 0.64277, "validation": "ValidData"})
    out = tmp_path / "s.json"
    summary = run_summary(head_metrics=None, seg_metrics=seg, map_metrics=write(tmp_path / "map.json", MAP), out=out, section="l4s")
    assert summary == {"val_pixel_f1": 0.6428, "map_pixel_f1": 0.6021, "map_obj_recall": 0.3898, "map_obj_precision": 0.3585}
    assert json.loads(out.read_text()) == {"l4s": summary}  # one key per pipeline: short, unique columns


def test_no_test_answers_means_no_test_f1(tmp_path: Path) -> None:
    head = write(tmp_path / "svm.json", {"cv": {"f1": 0.7}})  # the real Zindi test set has no answers
    summary = run_summary(head_metrics=head, seg_metrics=None, map_metrics=write(tmp_path / "map.json", MAP), out=tmp_path / "s.json")
    assert "test_f1" not in summary and summary["cv_f1"] == 0.7


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.json", None, r"missing.json not found; run `dvc repro score_map` first"),
        ("map.json", "{not json", r"map.json is not valid JSON .*rerun `dvc repro -f score_map`"),
        ("map.json", {"pixel": {"f1": 0.5}}, r"map.json has no 'objects.recall'; rerun `dvc repro -f score_map`"),
    ],
)
def test_a_bad_metrics_file_is_one_line_naming_it_and_nothing_is_written(tmp_path: Path, name: str, content, message: str) -> None:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content)
    elif content is not None:
        write(path, content)
    out = tmp_path / "summary.json"
    with pytest.raises(DataError, match=message) as excinfo:
        run_summary(head_metrics=None, seg_metrics=None, map_metrics=path, out=out)
    assert "\n" not in str(excinfo.value)
    assert not out.exists()
