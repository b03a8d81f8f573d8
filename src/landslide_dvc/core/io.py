"""Atomic outputs: every file or folder a stage produces appears whole or not at all.

Outputs get the ordinary mode the umask gives (0644 files and 0755 folders under umask 022), whatever
their writer made: safetensors, like ``tempfile.mkstemp``, writes owner-only files, which Dask workers
or a server under another account could not read. An ``OSError`` on the output side (a read-only
folder, a parent that is a file, a full disk) ends the run in one line naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from landslide_dvc.core.errors import (
    LandslideError,  # noqa: E402
)

PARTIAL_TAG = ".partial-"


def _partial_path(target: Path) -> Path:
    return target.with_name(f".{target.name}{PARTIAL_TAG}{os.getpid()}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def remove_stale_partials(target: str | os.PathLike[str]) -> None:
    """Delete leftovers of killed runs (``.name.partial-PID``) next to ``target``."""
    target = Path(target)
    if target.parent.is_dir():
        for leftover in target.parent.glob(f".{target.name}{PARTIAL_TAG}*"):
            _remove(leftover)


def current_umask() -> int:
    """The process's umask: from /proc on Linux (no window where another thread sees a changed mask),
    else by setting it and putting it back."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_umask_modes(path: Path, umask: int | None = None) -> None:
    """Give ``path`` (and, for a folder, everything below it) the mode a plain ``open``/``mkdir`` gives:
    0o666 & ~umask for files (0o777 & ~umask for executables), 0o777 & ~umask for folders."""
    umask = current_umask() if umask is None else umask
    entries = [path]
    if path.is_dir() and not path.is_symlink():
        entries += sorted(path.rglob("*"))
    for entry in entries:
        if entry.is_symlink():
            continue
        mode = entry.stat().st_mode
        wide = 0o777 if entry.is_dir() or mode & 0o111 else 0o666
        if (mode & 0o777) != wide & ~umask:
            entry.chmod(wide & ~umask)


def _first_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def output_error(exc: OSError, targets: list[Path] | tuple[Path, ...]) -> LandslideError:
    """One line for an ``OSError`` met while writing ``targets``: the path, the reason, the fix."""
    where = exc.filename or (targets[0] if targets else "")
    names = ", ".join(map(str, targets))
    if exc.errno == errno.ENOSPC:
        return LandslideError(
            f"no space left on device while writing {names}; free disk "
            f"space (or move the DVC cache with `dvc cache dir`) and rerun"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return LandslideError(
            f"cannot write {names}: {exc.strerror or 'permission denied'} ({where}); make its folder writable or choose "
            f"another output path"
        )
    return LandslideError(f"cannot write {names}: {exc.strerror or exc} ({where}); check the output path and rerun")


def ensure_output_folder(folder: str | os.PathLike[str], option: str = "--out") -> Path:
    """Create ``folder`` (with its parents) and probe that a file can be written in it, before any work.

    Every failure is one line naming the path and the fix (``option``: the flag that named the folder).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise LandslideError(f"{folder} is a file, not a folder, so {option} cannot be written there; choose another {option} (or move the file)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = _first_existing(folder.parent)
        if blocker.exists() and not blocker.is_dir():
            raise LandslideError(f"cannot create the folder {folder}: {blocker} is a file; choose another {option}") from None
        raise LandslideError(
            f"cannot create the folder {folder} ({exc.strerror or exc}); choose another {option} or make {blocker} writable"
        ) from None
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as exc:
        raise LandslideError(
            f"the folder {folder} is not writable ({exc.strerror or exc}); make it writable (chmod u+w {folder}) "
            f"or choose another {option}"
        ) from None
    return folder


@contextlib.contextmanager
def atomic_paths(*targets: str | os.PathLike[str], directories: bool = False) -> Iterator[tuple[Path, ...]]:
    """Yield temporary sibling paths; rename them onto ``targets`` only if the block succeeds.

    The temporary paths live in the targets' folders (same file system), so each final
    ``os.replace`` is atomic, and nothing is renamed before every output of the block is
    written: a run killed or failing at any point leaves no half-written file under a
    real output name. On an exception the temporary paths are removed and it propagates.
    With ``directories=True`` the temporary paths are created as empty folders.
    """
    paths = [Path(t) for t in targets]
    tmps: list[Path] = []
    try:
        for target in paths:
            target.parent.mkdir(parents=True, exist_ok=True)
            remove_stale_partials(target)
            tmp = _partial_path(target)
            if directories:
                tmp.mkdir()
            tmps.append(tmp)
    except OSError as exc:
        for tmp in tmps:
            _remove(tmp)
        raise output_error(exc, paths) from None
    try:
        yield tuple(tmps)
        for target, tmp in zip(paths, tmps):
            if not tmp.exists():
                raise LandslideError(f"internal error: {target} was not written")
        umask = current_umask()
        for tmp in tmps:
            apply_umask_modes(tmp, umask)
        for target, tmp in zip(paths, tmps):
            if tmp.is_dir() and target.exists():
                _remove(target)
            os.replace(tmp, target)
    except OSError as exc:
        for tmp in tmps:
            _remove(tmp)
        if on_output_side(exc, paths):
            raise output_error(exc, paths) from exc
        raise
    except BaseException:
        for tmp in tmps:
            _remove(tmp)
        raise


def on_output_side(exc: OSError, targets: list[Path]) -> bool:
    """Whether ``exc`` concerns the outputs: a reason only writing has, or a path in a target's folder
    (a missing file there is an input's problem, reported as it is)."""
    if exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT):
        return True
    folders = {t.parent.resolve() for t in targets}
    for name in (exc.filename, exc.filename2):
        if not isinstance(name, (str, bytes, os.PathLike)) or exc.errno == errno.ENOENT:
            continue
        where = Path(os.fsdecode(name)).resolve()
        if any(folder == where or folder in where.parents for folder in folders):
            return True
    return False


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, directory: bool = False) -> Iterator[Path]:
    """``atomic_paths`` for a single file (or folder, with ``directory=True``)."""
    with atomic_paths(target, directories=directory) as (tmp,):
        yield tmp


def content_digest(*arrays: np.ndarray) -> str:
    """A short hash of array contents, stored as provenance (and used to detect stale resumes)."""
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        digest.update(np.ascontiguousarray(array).view(np.uint8).reshape(-1))
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
