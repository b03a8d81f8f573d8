"""The `submit` stage: the challenge submission file from the chosen head's fold-averaged test scores."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from landslide.errors import DataError
from landslide.h5data import load_split, open_h5, read_strings
from landslide.io import atomic_paths
from landslide.metrics import read_answers, scores_metrics

DEFAULT_COLUMNS = ["ID", "Target"]  # the challenge's SampleSubmission.csv header


@dataclass(frozen=True)
class SubmitParams:
    """`submit:` section."""

    head: Literal["fc", "svm", "lgbm"]  # which head's predictions go to the leaderboard


def submission_rows(test_ids: list[str], labels: np.ndarray, order: list[str] | None) -> list[tuple[str, int]]:
    """(ID, 0/1) rows in the sample submission's order when there is one, else Test.csv order."""
    by_id = dict(zip(test_ids, labels.astype(int).tolist()))
    ids = order if order is not None else test_ids
    missing = [i for i in ids if i not in by_id]
    if missing or len(ids) != len(test_ids):
        raise DataError(f"the predictions do not cover test ID {missing[0] if missing else '?'}; rerun `dvc repro`")
    return [(i, by_id[i]) for i in ids]


def run_submit(
    params: SubmitParams,
    *,
    predictions_path: Path,
    test_path: Path,
    answers_path: Path,
    out_submission: Path,
    out_metrics: Path,
) -> dict[str, object]:
    """Write submissions/submission.csv (header and order copied from SampleSubmission.csv) and its metrics."""
    with open_h5(predictions_path, f"fit_head@{params.head}") as h5:
        test_ids = read_strings(h5["test/ids"])
        scores = h5["test/score"][()]
        threshold = float(h5.attrs["threshold"])
    test = load_split(test_path, with_images=False)
    if sorted(test_ids) != sorted(test.ids):
        raise DataError(f"{predictions_path} and {test_path} list different test IDs; rerun `dvc repro`")
    order = None
    columns = DEFAULT_COLUMNS
    with open_h5(test_path, "normalize") as h5:
        if "submission_ids" in h5:
            order = read_strings(h5["submission_ids"])
            columns = [str(c) for c in h5.attrs["submission_columns"]]
    labels = (scores >= threshold).astype(np.int8)
    rows = submission_rows(test_ids, labels, order)
    metrics: dict[str, object] = {
        "head": params.head,
        "threshold": threshold,
        "n_test": len(rows),
        "n_positive": int(labels.sum()),
        "positive_rate": float(labels.mean()) if len(labels) else 0.0,
    }
    answers = read_answers(answers_path, test_ids)
    if answers is not None:
        metrics["test"] = scores_metrics(answers, scores, threshold)
    with atomic_paths(out_submission, out_metrics) as (tmp_submission, tmp_metrics):
        with tmp_submission.open("w", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(columns)
            writer.writerows(rows)
        tmp_metrics.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
