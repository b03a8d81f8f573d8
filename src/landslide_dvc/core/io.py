"""Atomic outputs: every file or folder a stage produces appears whole or not at all."""

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
    tmps = []
    for target in paths:
        target.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(target)
        tmp = _partial_path(target)
        if directories:
            tmp.mkdir()
        tmps.append(tmp)
    try:
        yield tuple(tmps)
        for target, tmp in zip(paths, tmps):
            if not tmp.exists():
                raise LandslideError(f"internal error: {target} was not written")
        for target, tmp in zip(paths, tmps):
            if tmp.is_dir() and target.exists():
                _remove(target)
            os.replace(tmp, target)
    except OSError as exc:
        for tmp in tmps:
            _remove(tmp)
        if exc.errno == errno.ENOSPC:
            raise LandslideError(
                f"no space left on device while writing {', '.join(map(str, paths))}; free disk "
                f"space (or move the DVC cache with `dvc cache dir`) and rerun"
            ) from exc
        raise
    except BaseException:
        for tmp in tmps:
            _remove(tmp)
        raise


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
