"""Reading and validating a dataset in the Zindi layout (real files or the synthetic stand-in).

Layout (DATA-FORMATS.md): Train.csv (ID,label), Test.csv (ID), optional SampleSubmission.csv
(ID,Target), train_data/**/{ID}.npy and test_data/**/{ID}.npy of shape (64, 64, 12). Archives
sometimes unpack to a nested train_data/train_data/, so .npy files are searched below each
folder. An optional test_labels.csv (ID,label) holds the answers of the synthetic test set.

Every problem is reported as a DataError naming the file (and row/ID) and the fix, before
anything is written.
"""

from __future__ import annotations

import csv
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landslide.bands import N_RAW_BANDS, PATCH_SIZE
from landslide.errors import DataError

TRAIN_CSV = "Train.csv"
TEST_CSV = "Test.csv"
SAMPLE_SUBMISSION_CSV = "SampleSubmission.csv"
TEST_LABELS_CSV = "test_labels.csv"
TRAIN_DIR = "train_data"
TEST_DIR = "test_data"
EXPECTED_SHAPE = (PATCH_SIZE, PATCH_SIZE, N_RAW_BANDS)

# A plain file name: no separators, no "..", nothing a shell or OS treats specially.
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class ZindiIndex:
    """The CSV side of a dataset: IDs, labels and submission format, all validated."""

    root: Path
    train_ids: list[str]
    train_labels: np.ndarray  # int8, 0/1
    test_ids: list[str]
    test_labels: np.ndarray | None  # answers from test_labels.csv, in test_ids order
    submission_columns: list[str] | None  # header of SampleSubmission.csv
    submission_ids: list[str] | None  # its row order


def _read_csv(path: Path, required: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """(columns, rows) of a CSV file, requiring the ``required`` columns."""
    if not path.is_file():
        raise DataError(
            f"{path} not found; a dataset folder needs the Zindi layout (Train.csv, Test.csv, "
            f"train_data/, test_data/): check data.dir"
        )
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in required if c not in columns]
            if missing:
                raise DataError(
                    f"{path} has no column '{missing[0]}' (columns: {', '.join(columns) or 'none'}); "
                    f"expected {','.join(required)}"
                )
            rows = []
            for row in reader:
                rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items() if k is not None})
            return columns, rows
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a UTF-8 text CSV file; re-export it as CSV") from None
    except csv.Error as exc:
        raise DataError(f"{path} is not a valid CSV file ({exc}); re-export it") from None


def _check_ids(path: Path, ids: list[str]) -> None:
    seen: dict[str, int] = {}
    for row, sample_id in enumerate(ids, start=2):  # row 1 is the header
        if not _PLAIN_ID.match(sample_id) or sample_id in (".", ".."):
            raise DataError(
                f"{path} row {row}: ID {sample_id!r} is not a plain file name (letters, digits, '_', '-', "
                f"'.'; no path separators or '..'); fix the ID"
            )
        if sample_id in seen:
            raise DataError(
                f"{path}: ID {sample_id} appears twice (rows {seen[sample_id]} and {row}); remove the duplicate"
            )
        seen[sample_id] = row


def _check_same_ids(path: Path, ids: list[str], test_ids: list[str], what: str) -> None:
    """Plain, unique IDs that are exactly the test IDs (the answers, the sample submission)."""
    _check_ids(path, ids)
    if set(ids) != set(test_ids):
        extra = sorted(set(ids) ^ set(test_ids))
        raise DataError(
            f"{path} and {TEST_CSV} list different IDs (e.g. {extra[0]}); {what} must cover exactly the test IDs"
        )


def _parse_labels(path: Path, rows: list[dict[str, str]], column: str) -> np.ndarray:
    labels = np.empty(len(rows), dtype=np.int8)
    for i, row in enumerate(rows):
        text = row[column]
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if value not in (0.0, 1.0):
            raise DataError(
                f"{path} row {i + 2} (ID {row['ID']}): {column} {text!r} is not 0 or 1; "
                f"labels must be 0 (no landslide) or 1 (landslide)"
            )
        labels[i] = int(value)
    return labels


def read_index(root: str | Path) -> ZindiIndex:
    """Read and validate the CSV files of a Zindi-layout folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"data folder {root} does not exist; run `dvc repro synthesize` for the synthetic data "
            f"or set data.dir to the folder holding Train.csv"
        )
    _, train_rows = _read_csv(root / TRAIN_CSV, ["ID", "label"])
    if not train_rows:
        raise DataError(f"{root / TRAIN_CSV} lists no training images; it needs at least one ID,label row")
    train_ids = [r["ID"] for r in train_rows]
    _check_ids(root / TRAIN_CSV, train_ids)
    train_labels = _parse_labels(root / TRAIN_CSV, train_rows, "label")

    _, test_rows = _read_csv(root / TEST_CSV, ["ID"])
    test_ids = [r["ID"] for r in test_rows]
    _check_ids(root / TEST_CSV, test_ids)
    overlap = sorted(set(train_ids) & set(test_ids))
    if overlap:
        raise DataError(
            f"ID {overlap[0]} is in both {TRAIN_CSV} and {TEST_CSV} ({len(overlap)} shared IDs); "
            f"a patch must belong to one split only"
        )

    test_labels = None
    labels_path = root / TEST_LABELS_CSV
    if labels_path.exists():
        _, rows = _read_csv(labels_path, ["ID", "label"])
        answer_ids = [r["ID"] for r in rows]
        _check_same_ids(labels_path, answer_ids, test_ids, "the answers")
        by_id = dict(zip(answer_ids, _parse_labels(labels_path, rows, "label")))
        test_labels = np.array([by_id[i] for i in test_ids], dtype=np.int8)

    submission_columns = submission_ids = None
    sample_path = root / SAMPLE_SUBMISSION_CSV
    if sample_path.exists():
        header, rows = _read_csv(sample_path, ["ID"])
        if len(header) != 2 or header[0] != "ID":
            raise DataError(
                f"{sample_path} header {','.join(header)} is not 'ID,<target column>'; "
                f"fix the file or remove it (submissions then use ID,Target)"
            )
        submission_ids = [r["ID"] for r in rows]
        _check_same_ids(sample_path, submission_ids, test_ids, "the sample submission")
        submission_columns = header

    return ZindiIndex(root, train_ids, train_labels, test_ids, test_labels, submission_columns, submission_ids)


def index_npy_files(folder: Path) -> dict[str, Path]:
    """Map ID -> .npy path for every .npy below ``folder`` (any depth, e.g. train_data/train_data/)."""
    if not folder.is_dir():
        raise DataError(f"{folder} not found; the Zindi layout keeps one {{ID}}.npy per image there")
    found: dict[str, Path] = {}
    for dirpath, _dirnames, filenames in os.walk(folder):
        for name in filenames:
            if not name.endswith(".npy"):
                continue
            path = Path(dirpath) / name
            sample_id = name[: -len(".npy")]
            if sample_id in found:
                raise DataError(
                    f"{sample_id}.npy exists twice ({found[sample_id]} and {path}); keep one copy"
                )
            found[sample_id] = path
    return found


def load_patch(path: Path) -> np.ndarray:
    """Load one (64, 64, 12) patch as float32, refusing pickles, bad shapes and NaN/Inf."""
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickle" in str(exc).lower():
            raise DataError(
                f"{path} holds Python objects and needs pickle to load; refusing it (unsafe): "
                f"save the patch as a numeric array with np.save"
            ) from None
        raise DataError(f"{path} is truncated or not a valid .npy file ({exc}); re-extract it") from None
    except (EOFError, OSError) as exc:
        raise DataError(f"{path} is truncated or not a valid .npy file ({exc}); re-extract it") from None
    if not isinstance(array, np.ndarray):  # np.load gives an NpzFile for .npz archives
        raise DataError(f"{path} is not a single .npy array; save each patch with np.save")
    if array.dtype.kind not in "iuf":
        raise DataError(
            f"{path} has dtype {array.dtype}, not a real number type; save the patch as float32"
        )
    if array.shape != EXPECTED_SHAPE:
        raise DataError(
            f"{path} has shape {array.shape}, expected {EXPECTED_SHAPE} (H, W, bands); "
            f"fix or remove the patch"
        )
    with np.errstate(over="ignore"):
        patch = array.astype(np.float32)
    bad = int(np.size(patch) - np.count_nonzero(np.isfinite(patch)))
    if bad:
        raise DataError(f"{path} contains {bad} NaN/Inf values (as float32); fill them or remove the patch")
    return patch


def load_images(root: Path, folder: str, ids: list[str], csv_name: str) -> np.ndarray:
    """Load the patches of ``ids`` from ``root/folder`` as a float32 array (N, 12, 64, 64)."""
    files = index_npy_files(root / folder)
    missing = [i for i in ids if i not in files]
    if missing:
        raise DataError(
            f"{root / folder}/{missing[0]}.npy not found ({len(missing)} of {len(ids)} IDs in {csv_name} "
            f"have no .npy); add the files or remove those rows"
        )
    out = np.empty((len(ids), N_RAW_BANDS, PATCH_SIZE, PATCH_SIZE), dtype=np.float32)

    def load_into(k: int) -> None:
        out[k] = load_patch(files[ids[k]]).transpose(2, 0, 1)

    # Reading thousands of small files is I/O-bound; a few threads overlap the waits.
    with ThreadPoolExecutor(max_workers=4) as pool:
        for _ in pool.map(load_into, range(len(ids))):
            pass
    return out
