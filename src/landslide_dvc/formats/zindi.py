"""Reading and validating a dataset in the Zindi layout (real files or the synthetic stand-in).

Layout (docs/data-formats.md): Train.csv (ID,label), Test.csv (ID), optional SampleSubmission.csv
(ID,Target), train_data/**/{ID}.npy and test_data/**/{ID}.npy of shape (64, 64, 12). Archives
unpack to a nested train_data/train_data/, so .npy files are searched below each folder,
following links (DVC's symlink/hardlink cache types). An optional test_labels.csv (ID,label)
holds the answers of the synthetic test set.

Files are taken as users actually have them (docs/method.md, "Decisions for real files"): CSV text in
UTF-8/UTF-16/cp1252, any line ending, comma/semicolon/tab delimited, header names in any case
and order, extra columns, labels written 1.0; arrays of any real dtype and byte order. A test
ID listed twice (the real Test.csv lists ID_Q2Q7VF twice) is loaded once and written once per
listed row. Everything really broken is a DataError naming the file (and row/ID) and the fix,
raised before anything is written.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from landslide_dvc.core.channels import channel_names, check_optical_scale, raw_to_channels
from landslide_dvc.core.errors import DataError
from landslide_dvc.core.patches import (
    _PLAIN_ID,
    SAMPLE_SUBMISSION_CSV,
    SUBMISSION_COLUMNS,
    TEST_CSV,
    TEST_DIR,
    TEST_LABELS_CSV,
    TRAIN_CSV,
    TRAIN_DIR,
    CsvTable,
    load_images,
    read_table,
)
from landslide_dvc.formats.dataset import DatasetFormat, FormatData, SplitData


@dataclass(frozen=True)
class ZindiIndex:
    """The CSV side of a dataset: IDs, labels and submission format, all validated."""

    root: Path
    train_ids: list[str]  # unique, in Train.csv order
    train_labels: np.ndarray  # int8, 0/1
    test_ids: list[str]  # unique, in Test.csv order: the images loaded and scored
    test_labels: np.ndarray | None  # answers from test_labels.csv, in test_ids order
    submission_columns: list[str] | None  # header of SampleSubmission.csv
    submission_ids: list[str] | None  # its row order (repeats kept)
    test_rows: list[str] = field(default_factory=list)  # Test.csv's listed order (repeats kept)
    notices: tuple[str, ...] = ()  # one line each: repeats that were accepted

    @property
    def submission_order(self) -> list[str]:
        """One ID per submission row: the sample file's rows, or Test.csv's when there is none."""
        return self.submission_ids if self.submission_ids is not None else self.test_rows

    @property
    def submission_header(self) -> list[str]:
        return self.submission_columns if self.submission_columns is not None else list(SUBMISSION_COLUMNS)


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def _check_ids(table: CsvTable) -> None:
    for line, row in table.rows:
        sample_id = row["ID"]
        if not _PLAIN_ID.match(sample_id) or sample_id in (".", ".."):
            raise DataError(
                f"{table.path} row {line}: ID {sample_id!r} is not a plain file name (letters, digits, '_', '-', "
                f"'.'; no path separators or '..'); fix the ID"
            )


def _parse_label(table: CsvTable, line: int, row: dict[str, str], column: str) -> int:
    """0 or 1 from '0', '1', '1.0', and '1,0' in semicolon/tab files (a decimal-comma locale)."""
    text = row[column]
    number = text.replace(",", ".") if table.delimiter != "," and text.count(",") == 1 else text
    try:
        value = float(number)
    except ValueError:
        value = float("nan")
    if value not in (0.0, 1.0):
        raise DataError(
            f"{table.path} row {line} (ID {row['ID']}): {column} {text!r} is not 0 or 1; "
            f"labels must be 0 (no landslide) or 1 (landslide)"
        )
    return int(value)


def _repeat_notice(name: str, repeats: dict[str, int], action: str) -> str:
    """One line about IDs listed more than once; ``action`` says what was done with them."""
    if len(repeats) == 1:
        ((sample_id, n),) = repeats.items()
        return f"{name} lists {sample_id} {_times(n)}; {action}"
    examples = ", ".join(f"{i} {_times(n)}" for i, n in list(repeats.items())[:3])
    more = ", ..." if len(repeats) > 3 else ""
    return f"{name} lists {len(repeats)} IDs more than once ({examples}{more}); each {action}"


def labelled_ids(table: CsvTable, column: str) -> tuple[list[str], np.ndarray, str | None]:
    """Unique IDs and 0/1 labels in first-listed order; a repeat with the same label is kept once.

    Returns (ids, labels, notice or None). A repeat with another label is refused, naming both rows.
    """
    _check_ids(table)
    first: dict[str, tuple[int, int]] = {}  # ID -> (line, label)
    counts: Counter[str] = Counter()
    for line, row in table.rows:
        label = _parse_label(table, line, row, column)
        sample_id = row["ID"]
        counts[sample_id] += 1
        if sample_id not in first:
            first[sample_id] = (line, label)
        elif first[sample_id][1] != label:
            first_line, first_label = first[sample_id]
            raise DataError(
                f"{table.path}: ID {sample_id} is listed with {column} {first_label} (row {first_line}) and "
                f"{column} {label} (row {line}); keep the row with the right {column}"
            )
    ids = list(first)
    labels = np.array([first[i][1] for i in ids], dtype=np.int8)
    repeats = {i: n for i, n in counts.items() if n > 1}
    notice = _repeat_notice(table.path.name, repeats, "kept once (same label)") if repeats else None
    return ids, labels, notice


def _check_covers(table: CsvTable, ids: list[str], test_ids: list[str], what: str) -> None:
    """``ids`` (from ``table``) name exactly the test images, no more, no fewer."""
    if set(ids) != set(test_ids):
        extra = sorted(set(ids) ^ set(test_ids))
        raise DataError(
            f"{table.path} and {TEST_CSV} list different IDs (e.g. {extra[0]}); {what} must cover exactly the test IDs"
        )


def _submission_format(table: CsvTable) -> list[str]:
    """The sample file's header: an ID column and one target column, in either order."""
    named = [h for h in table.header if h]
    if len(named) != 2:
        raise DataError(
            f"{table.path} header {','.join(table.header)} is not 'ID,<target column>'; "
            f"fix the file or remove it (submissions then use ID,Target)"
        )
    return named


def _test_repeat_notice(test_rows: list[str], sample_rows: list[str] | None) -> str | None:
    """'Test.csv lists ID_Q2Q7VF twice; scored once, written twice' for IDs listed more than once."""
    in_test = Counter(test_rows)
    written = Counter(sample_rows if sample_rows is not None else test_rows)
    in_sample = Counter(sample_rows or [])
    repeated = [i for i in dict.fromkeys(test_rows + (sample_rows or [])) if in_test[i] > 1 or in_sample[i] > 1]
    if not repeated:
        return None
    by_file: dict[str, dict[str, int]] = {}
    for sample_id in repeated:
        name, n = (TEST_CSV, in_test[sample_id]) if in_test[sample_id] > 1 else (SAMPLE_SUBMISSION_CSV, in_sample[sample_id])
        by_file.setdefault(name, {})[sample_id] = n
    lines = []
    for name, repeats in by_file.items():
        if len(repeats) == 1:
            ((sample_id, n),) = repeats.items()
            lines.append(f"{name} lists {sample_id} {_times(n)}; scored once, written {_times(written[sample_id])}")
        else:
            lines.append(_repeat_notice(name, repeats, "scored once, written once per listed row"))
    return "; ".join(lines)


def read_index(root: str | Path) -> ZindiIndex:
    """Read and validate the CSV files of a Zindi-layout folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist; run `dvc repro synthesize` for the synthetic data "
            f"or set data.dir to the folder holding Train.csv"
        )
    notices: list[str] = []
    train = read_table(root / TRAIN_CSV, ["ID", "label"])
    if not train.rows:
        raise DataError(f"{train.path} lists no training images; it needs at least one ID,label row")
    train_ids, train_labels, notice = labelled_ids(train, "label")
    notices += [notice] if notice else []

    test = read_table(root / TEST_CSV, ["ID"])
    if not test.rows:
        raise DataError(f"{test.path} lists no test images; it needs a header line ID and one row per test image")
    _check_ids(test)
    test_rows = [row["ID"] for _, row in test.rows]
    test_ids = list(dict.fromkeys(test_rows))
    overlap = sorted(set(train_ids) & set(test_ids))
    if overlap:
        raise DataError(
            f"ID {overlap[0]} is in both {TRAIN_CSV} and {TEST_CSV} ({len(overlap)} shared IDs); "
            f"a patch must belong to one split only"
        )

    test_labels = None
    if (root / TEST_LABELS_CSV).exists():
        answers = read_table(root / TEST_LABELS_CSV, ["ID", "label"])
        answer_ids, answer_labels, notice = labelled_ids(answers, "label")
        notices += [notice] if notice else []
        _check_covers(answers, answer_ids, test_ids, "the answers")
        by_id = dict(zip(answer_ids, answer_labels))
        test_labels = np.array([by_id[i] for i in test_ids], dtype=np.int8)

    submission_columns = submission_ids = None
    if (root / SAMPLE_SUBMISSION_CSV).exists():
        sample = read_table(root / SAMPLE_SUBMISSION_CSV, ["ID"])
        submission_columns = _submission_format(sample)
        _check_ids(sample)
        submission_ids = [row["ID"] for _, row in sample.rows]
        _check_covers(sample, submission_ids, test_ids, "the sample submission")
    notice = _test_repeat_notice(test_rows, submission_ids)
    notices += [notice] if notice else []

    return ZindiIndex(
        root, train_ids, train_labels, test_ids, test_labels, submission_columns, submission_ids,
        test_rows=test_rows, notices=tuple(notices),
    )




def read_for_normalize(root: Path, channels: int, own_params: None, optical_scale: float) -> FormatData:
    """The dataset at ``root`` for `normalize`: both splits' channels, the labels, the submission's rows."""
    index = read_index(root)

    def split(folder: str, ids: list[str], csv_name: str) -> np.ndarray:
        raw = load_images(root, folder, ids, csv_name)
        check_optical_scale(raw, optical_scale, f"{root / folder} ({csv_name})")
        return raw_to_channels(raw, channels, optical_scale)  # type: ignore[arg-type]

    return FormatData(
        train=SplitData(split(TRAIN_DIR, index.train_ids, TRAIN_CSV), index.train_ids),
        # One ID per submission row: `submit` writes them in this order, a repeated ID with its one score.
        test=SplitData(split(TEST_DIR, index.test_ids, TEST_CSV), index.test_ids,
                       attrs={"submission_columns": index.submission_header},
                       extra={"submission_ids": np.array(index.submission_order, dtype=object)}),
        train_labels=index.train_labels,
        labels_source=str(Path(root) / TRAIN_CSV),
        test_labels=index.test_labels,  # the real Zindi test set has no answers
        channels=channel_names(channels),  # type: ignore[arg-type]
        layout={"optical_scale": float(optical_scale)},
        n_submission_rows=len(index.submission_order),
        notices=index.notices,
    )


ZINDI = DatasetFormat(
    name="zindi", channel_sets=(12, 20, 28), ssl4eo=True, ssl4eo_refusal="", params_section=None, params_class=None,
    read=read_for_normalize,
)
