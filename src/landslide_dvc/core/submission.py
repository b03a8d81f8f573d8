"""The challenge submission file: one writer for the `submit` stage and `landslide-dvc predict`.

One row per listed row, in the listed order (the sample file's, else Test.csv's), under the
sample file's header: an ID listed twice is scored once and written twice."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from landslide_dvc.core.errors import DataError


def submission_rows(
    test_ids: list[str], labels: np.ndarray, order: list[str], columns: list[str]
) -> list[list[object]]:
    """One row per ID of ``order`` (repeats kept), cells in the order of ``columns`` (ID + target)."""
    by_id = dict(zip(test_ids, labels.astype(int).tolist()))
    missing = sorted(set(order) ^ set(test_ids))
    if missing:
        raise DataError(f"the predictions and the submission rows differ on test ID {missing[0]}; rerun `dvc repro`")
    lowered = [c.strip().lower() for c in columns]
    if "id" not in lowered:
        raise DataError(f"submission header {','.join(columns)} has no ID column; rerun `dvc repro -f normalize`")
    id_at = lowered.index("id")
    return [[sample_id if k == id_at else by_id[sample_id] for k in range(len(columns))] for sample_id in order]


def write_submission(path: Path, columns: list[str], rows: list[list[object]]) -> None:
    """The submission CSV: the sample file's header, then one row per listed ID."""
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
