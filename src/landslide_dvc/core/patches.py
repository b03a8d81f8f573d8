"""Patch files and CSV tables as the Zindi challenge ships them, read as users actually have them.

Shared by the dataset loader (`landslide_dvc.formats.zindi`) and `landslide-dvc predict`: CSV text in
UTF-8/UTF-16/cp1252, any line ending, comma/semicolon/tab delimited, header names in any case and
order, extra columns; (64, 64, 12) .npy patches of any real dtype and byte order, found at any depth
below their folder (archives unpack to a nested train_data/train_data/), following links. Everything
really broken is a DataError naming the file and the fix."""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landslide_dvc.core.bands import N_RAW_BANDS, PATCH_SIZE
from landslide_dvc.core.errors import DataError

TRAIN_CSV = "Train.csv"


TEST_CSV = "Test.csv"


SAMPLE_SUBMISSION_CSV = "SampleSubmission.csv"


TEST_LABELS_CSV = "test_labels.csv"


TRAIN_DIR = "train_data"


TEST_DIR = "test_data"


EXPECTED_SHAPE = (PATCH_SIZE, PATCH_SIZE, N_RAW_BANDS)


SUBMISSION_COLUMNS = ("ID", "Target")  # the challenge's header, used when there is no sample file


# A plain file name: no separators, no "..", nothing a shell or OS treats specially.
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


# Byte-order marks, longest first (the UTF-32 LE mark starts with the UTF-16 LE one).
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


# Without a mark: UTF-8, else Excel's Windows code page, else Latin-1 (which decodes any byte).
# Only the ID and label columns are read, and IDs must be ASCII, so the guess cannot change them.
_FALLBACK_ENCODINGS = ("utf-8", "cp1252", "latin-1")


_DELIMITERS = (",", ";", "\t")  # comma, and what spreadsheets in decimal-comma locales write


@dataclass(frozen=True)
class CsvTable:
    """The rows of one CSV file: values of the requested columns, keyed by their canonical name."""

    path: Path
    header: list[str]  # as written (stripped), e.g. ['id', 'Target']
    rows: list[tuple[int, dict[str, str]]]  # (line number in the file, {column: value})
    delimiter: str


def _missing_file(path: Path) -> DataError:
    return DataError(
        f"{path} not found; a dataset folder needs the Zindi layout (Train.csv, Test.csv, "
        f"train_data/, test_data/): check data.dir"
    )


def decode_csv_bytes(path: Path, data: bytes) -> str:
    """Text of a CSV file: BOM-marked UTF-8/16/32, else UTF-8, cp1252 or Latin-1."""
    if data.startswith(b"PK\x03\x04") or data.startswith(b"\xd0\xcf\x11\xe0"):
        raise DataError(f"{path} is a spreadsheet workbook (.xlsx/.xls), not CSV text; save it as CSV")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                raise DataError(f"{path} starts with a {encoding} byte-order mark but is not {encoding} text; re-save it as CSV UTF-8") from None
    if b"\x00" in data:
        raise DataError(
            f"{path} contains NUL bytes: not a text CSV (UTF-16 without a byte-order mark?); re-save it as CSV UTF-8"
        )
    for encoding in _FALLBACK_ENCODINGS:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _header_delimiter(header_line: str) -> str:
    """The most frequent of , ; tab in the header line (comma when it has none: one column)."""
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])  # ties go to the earlier (comma first)
    return best if counts[best] else ","


def _find_columns(path: Path, header: list[str], required: list[str]) -> dict[str, int]:
    """Position of each required column, matched case-insensitively; refuse missing or ambiguous ones."""
    lowered = [name.lower() for name in header]
    found = {}
    for name in required:
        positions = [i for i, col in enumerate(lowered) if col == name.lower()]
        if not positions:
            raise DataError(
                f"{path} has no column '{name}' (columns: {', '.join(h for h in header if h) or 'none'}); "
                f"expected {','.join(required)}"
            )
        if len(positions) > 1:
            raise DataError(
                f"{path} has {len(positions)} columns named '{name}' (ignoring case); keep one"
            )
        found[name] = positions[0]
    return found


def read_table(path: Path, required: list[str]) -> CsvTable:
    """Read a CSV file as users have it, keeping the ``required`` columns of every non-blank row."""
    if not path.is_file():
        raise _missing_file(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path} cannot be read ({exc.strerror}); check its permissions") from None
    text = decode_csv_bytes(path, data)
    lines = io.StringIO(text, newline="")
    empty = DataError(f"{path} is empty; it needs a header line ({','.join(required)}) and one row per image")
    first = next((line for line in lines if line.strip()), None)
    if first is None:
        raise empty
    delimiter = _header_delimiter(first)
    lines.seek(0)
    reader = csv.reader(lines, delimiter=delimiter, skipinitialspace=True)
    try:
        header: list[str] | None = None
        rows: list[tuple[int, dict[str, str]]] = []
        for cells in reader:
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue  # blank lines, and rows of empty cells a spreadsheet leaves at the end
            if header is None:
                header = [c.lstrip("\ufeff") for c in cells]  # a second BOM from a tool that added one again
                positions = _find_columns(path, header, required)
                continue
            rows.append((reader.line_num, {name: cells[i] if i < len(cells) else "" for name, i in positions.items()}))
    except csv.Error as exc:
        raise DataError(f"{path} is not a valid CSV file (line {reader.line_num}: {exc}); re-export it as CSV") from None
    if header is None:
        raise empty
    return CsvTable(path, header, rows, delimiter)


def _walk_npy(folder: Path) -> dict[str, list[Path]]:
    """Every {ID}.npy below ``folder``, following folder links once each (a link loop is walked once)."""
    found: dict[str, list[Path]] = {}
    visited: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            info = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (info.st_dev, info.st_ino) in visited:
            dirnames[:] = []  # reached again through a link: already indexed
            continue
        visited.add((info.st_dev, info.st_ino))
        for name in filenames:
            if name.lower().endswith(".npy"):
                found.setdefault(name[: -len(".npy")], []).append(Path(dirpath) / name)
    return found


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _one_copy(sample_id: str, paths: list[Path]) -> Path:
    """The file to load for an ID found more than once: links to one file, or byte-identical copies
    (an archive unpacked both flat and nested). Copies that differ are refused."""
    first = paths[0]
    for other in paths[1:]:
        if _same_file(first, other):
            continue  # a link (symlink or hard link) to the same file
        try:
            identical = first.read_bytes() == other.read_bytes()
        except OSError:
            identical = False
        if not identical:
            raise DataError(
                f"{sample_id}.npy exists twice with different contents ({first} and {other}); keep the right copy"
            )
    return first


def index_npy_files(folder: Path, wanted: set[str] | None = None) -> dict[str, Path]:
    """Map ID -> .npy path for every .npy below ``folder`` (any depth, e.g. train_data/train_data/).

    Folder links are followed with loop protection. An ID found at two places is kept when
    both are the same file (links) or byte-identical copies; differing copies are refused.
    ``wanted`` restricts the result (and the duplicate checks) to those IDs.
    """
    if not folder.is_dir():
        if folder.is_symlink():
            raise DataError(
                f"{folder} is a link to {os.readlink(folder)}, which does not exist; restore the target "
                f"(`dvc checkout` for DVC-tracked data) or replace the link with the folder"
            )
        raise DataError(f"{folder} not found; the Zindi layout keeps one {{ID}}.npy per image there")
    return {
        sample_id: _one_copy(sample_id, paths) if len(paths) > 1 else paths[0]
        for sample_id, paths in _walk_npy(folder).items()
        if wanted is None or sample_id in wanted
    }


def _open_error(path: Path, exc: OSError) -> DataError:
    if path.is_symlink() and not path.exists():
        return DataError(
            f"{path} is a link to {os.readlink(path)}, which does not exist (a dangling link); restore the "
            f"target (`dvc checkout` for DVC-tracked data) or replace the link with the file"
        )
    if isinstance(exc, PermissionError):
        return DataError(f"{path} cannot be read (permission denied); make it readable (chmod +r)")
    return DataError(f"{path} is truncated or not a valid .npy file ({exc}); re-extract it")


def load_patch(path: Path) -> np.ndarray:
    """Load one (64, 64, 12) patch as float32, refusing pickles, bad shapes and NaN/Inf.

    Any real dtype (int, uint, float16/32/64), byte order and memory order is accepted; the
    values are converted to float32.
    """
    try:
        array = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc) or "pickle" in str(exc).lower():
            raise DataError(
                f"{path} holds Python objects and needs pickle to load; refusing it (unsafe): "
                f"save the patch as a numeric array with np.save"
            ) from None
        raise DataError(f"{path} is truncated or not a valid .npy file ({exc}); re-extract it") from None
    except OSError as exc:
        raise _open_error(path, exc) from None
    except EOFError as exc:
        raise DataError(f"{path} is truncated or not a valid .npy file ({exc}); re-extract it") from None
    if not isinstance(array, np.ndarray):  # np.load gives an NpzFile for .npz archives
        raise DataError(f"{path} is not a single .npy array; save each patch with np.save")
    if array.dtype.kind not in "iuf":
        raise DataError(
            f"{path} has dtype {array.dtype}, not a real number type; save the patch as float32"
        )
    if array.shape != EXPECTED_SHAPE:
        hint = " (channels first? the Zindi layout is channels last)" if array.shape == EXPECTED_SHAPE[::-1] else ""
        raise DataError(
            f"{path} has shape {array.shape}, expected {EXPECTED_SHAPE} (H, W, bands){hint}; "
            f"fix or remove the patch"
        )
    with np.errstate(over="ignore"):
        patch = array.astype(np.float32)
    bad = int(np.size(patch) - np.count_nonzero(np.isfinite(patch)))
    if bad:
        raise DataError(f"{path} contains {bad} NaN/Inf values (as float32); fill them or remove the patch")
    return patch


def load_images(root: Path, folder: str, ids: list[str], csv_name: str) -> np.ndarray:
    """Load the patches of ``ids`` (unique) from ``root/folder`` as a float32 array (N, 12, 64, 64)."""
    files = index_npy_files(root / folder, set(ids))
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
