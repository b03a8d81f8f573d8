"""The persistent per-epoch checkpoint of a fold's training run (a DVC `persist` output).

A killed `train_fold@k` continues from its last completed epoch. The state is tied to a
fingerprint of the parameters and inputs, so a state written by another configuration is ignored.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from landslide_dvc.core.io import atomic_path


def fingerprint(config: dict[str, Any]) -> str:
    """Identity of a training run; a resume state is only used by the run that wrote it."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:32]


class ResumeState:
    """Save, load and retire the resume state of one fold in ``folder`` (None: no resuming)."""

    STATE = "state.pt"
    DONE = "complete.json"

    def __init__(self, folder: Path | None, run_id: str) -> None:
        self.folder, self.run_id = folder, run_id

    def load(self) -> dict[str, Any] | None:
        if self.folder is None:
            return None
        path = self.folder / self.STATE
        if not path.is_file():
            return None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - any unreadable checkpoint means: start over
            print(f"resume: {path} is unreadable; starting this fold from scratch", file=sys.stderr)
            return None
        if not isinstance(state, dict) or state.get("run_id") != self.run_id:
            print(f"resume: {path} belongs to another configuration; starting from scratch", file=sys.stderr)
            return None
        return state

    def save(self, state: dict[str, Any]) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / self.DONE).unlink(missing_ok=True)
        with atomic_path(self.folder / self.STATE) as tmp:
            torch.save({**state, "run_id": self.run_id}, tmp)

    def finish(self, epochs: int) -> None:
        """Drop the heavy state once the outputs are written; keep a small marker for DVC."""
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.folder / self.DONE) as tmp:
            tmp.write_text(json.dumps({"run_id": self.run_id, "epochs": epochs}) + "\n")
        (self.folder / self.STATE).unlink(missing_ok=True)
