"""Shared entry-point plumbing for the thin scripts in stages/."""

from __future__ import annotations

import argparse
import errno
import os
import sys
from collections.abc import Callable

from landslide_dvc.core.errors import LandslideError

# Make DVC's own calls and any library that respects these variables stay offline and quiet.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def run_stage(stage: str, main: Callable[[], None]) -> None:
    """Run ``main`` and turn expected failures into one line on stderr and a non-zero exit.

    Outputs are written through ``landslide_dvc.core.io.atomic_path``, so a failure here never
    leaves a partial output behind.
    """
    try:
        main()
    except LandslideError as exc:
        print(f"{stage}: error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{stage}: interrupted; no output was written for the unfinished step", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            where = f" while writing {exc.filename}" if exc.filename else ""
            print(f"{stage}: error: no space left on device{where}; free disk space and rerun", file=sys.stderr)
            sys.exit(1)
        raise


def fold_argument(description: str) -> int:
    """Parse the ``--fold K`` loop variable of a foreach stage."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--fold", type=int, required=True, help="cross-validation fold index")
    return parser.parse_args().fold


def head_argument(description: str) -> str:
    """Parse the ``--head NAME`` loop variable of the fit_head stages."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--head", required=True, help="a head of core.heads.HEAD_KINDS (fc, svm, ...)")
    return parser.parse_args().head
