"""The `submit` stage: the challenge submission file from the chosen head's fold-averaged test scores.

One row per entry of test.h5's submission_ids (the sample submission's rows, or Test.csv's), in
that order: an ID listed twice (the real Test.csv's ID_Q2Q7VF) was scored once and is written
twice with the same label. The header is the sample file's (default ID,Target).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from landslide_dvc.core.errors import DataError, ParamError
from landslide_dvc.core.heads import check_head
from landslide_dvc.core.io import atomic_paths
from landslide_dvc.core.metrics import read_answers, scores_metrics
from landslide_dvc.core.params import params_section
from landslide_dvc.core.submission import submission_rows, write_submission
from landslide_dvc.pipeline.h5data import load_split, open_h5, read_strings


@params_section
class SubmitParams:
    """`submit:` section."""

    head: str  # which head's predictions go to the leaderboard: a name of core.heads.HEADS

    def validate(self) -> None:
        try:
            check_head(self.head)
        except ParamError as exc:
            raise ParamError(f"submit.head: {exc}") from None


def run_submit(
    params: SubmitParams,
    *,
    predictions_path: Path,
    test_path: Path,
    answers_path: Path,
    out_submission: Path,
    out_metrics: Path,
) -> dict[str, object]:
    """Write submissions/submission.csv (header and rows as SampleSubmission.csv, else Test.csv) and its metrics."""
    with open_h5(predictions_path, f"fit_head@{params.head}") as h5:
        test_ids = read_strings(h5["test/ids"])
        scores = h5["test/score"][()]
        threshold = float(h5.attrs["threshold"])
    test = load_split(test_path, with_images=False)
    if sorted(test_ids) != sorted(test.ids):
        raise DataError(f"{predictions_path} and {test_path} list different test IDs; rerun `dvc repro`")
    with open_h5(test_path, "normalize") as h5:
        order = read_strings(h5["submission_ids"])
        columns = [c.decode() if isinstance(c, bytes) else str(c) for c in h5.attrs["submission_columns"]]
    labels = (scores >= threshold).astype(np.int8)
    rows = submission_rows(test_ids, labels, order, columns)
    metrics: dict[str, object] = {
        "head": params.head,
        "threshold": threshold,
        "n_test": len(test_ids),  # distinct images scored
        "n_rows": len(rows),  # submission rows: an ID listed twice is written twice
        "n_positive": int(labels.sum()),
        "positive_rate": float(labels.mean()) if len(labels) else 0.0,
    }
    answers = read_answers(answers_path, test_ids)
    if answers is not None:
        metrics["test"] = scores_metrics(answers, scores, threshold)
    with atomic_paths(out_submission, out_metrics) as (tmp_submission, tmp_metrics):
        write_submission(tmp_submission, columns, rows)
        tmp_metrics.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return metrics
