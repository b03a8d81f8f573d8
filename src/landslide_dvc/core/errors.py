"""Errors that stop a stage with one clear line (what is wrong, where, and how to fix it)."""

from __future__ import annotations


class LandslideError(Exception):
    """Base class: the message is printed as one line and the stage exits non-zero."""

    def __init__(self, message: str) -> None:
        # One line, always: multi-line messages get lost in `dvc repro` output.
        super().__init__(" ".join(str(message).split()))


class DataError(LandslideError):
    """A data file is missing, malformed or inconsistent."""


class ParamError(LandslideError):
    """A value in params.yaml is missing, unknown or of the wrong type/range."""
