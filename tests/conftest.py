"""Shared fixtures: tiny hand-made datasets in the Zindi layout and micro pipeline configs."""

from __future__ import annotations

import csv
import os
from pathlib import Path

# Before numpy and torch load, so that the tests run on the pinned CPU code paths (docs/reliability.md).
import landslide_dvc  # noqa: F401

# isort: split
import numpy as np
import pytest

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def make_zindi(
    root: Path,
    n_train: int = 20,
    n_test: int = 8,
    n_pos: int = 6,
    *,
    seed: int = 0,
    dtype: str = "float32",
    nested: bool = False,
    answers: bool = True,
    sample: bool = True,
    sample_header: tuple[str, str] = ("ID", "Target"),
    optical_scale: float = 10000.0,
    repeat_test: int | None = None,
) -> dict[str, object]:
    """A small dataset in the Zindi layout; landslides carry a bright NIR-drop square.

    Optical bands are reflectance times ``optical_scale`` (default 10000: Sentinel-2 digital
    numbers, as the real files and params.yaml's data.optical_scale; 1: reflectance). ``nested``: train_data/train_data/ and test_data/test_data/, as the real archive.
    ``repeat_test=k``: test ID k is listed twice (adjacent rows) in Test.csv and in the sample
    file, as the real Test.csv lists ID_Q2Q7VF; its .npy exists once.
    """
    rng = np.random.default_rng(seed)
    train_ids = [f"ID_TR{i:04d}" for i in range(n_train)]
    test_ids = [f"ID_TE{i:04d}" for i in range(n_test)]
    labels = np.zeros(n_train, dtype=int)
    labels[rng.choice(n_train, n_pos, replace=False)] = 1
    test_labels = (rng.random(n_test) < 0.3).astype(int)
    train_dir = root / "train_data" / ("train_data" if nested else "")
    test_dir = root / "test_data" / ("test_data" if nested else "")
    train_dir.mkdir(parents=True, exist_ok=True)
    test_dir.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for ids, folder, labs in ((train_ids, train_dir, labels), (test_ids, test_dir, test_labels)):
        for sample_id, label in zip(ids, labs):
            patch = rng.normal(0.0, 1.0, size=(64, 64, 12))
            patch[..., :4] = np.abs(patch[..., :4]) * 0.05 + 0.1
            if label:
                patch[20:40, 20:40, 3] -= 0.08
                patch[20:40, 20:40, 6] += 3.0
            patch[..., :4] *= optical_scale
            patch = patch.astype(dtype)
            np.save(folder / f"{sample_id}.npy", patch)
            arrays[sample_id] = patch
    test_rows = list(test_ids)
    if repeat_test is not None:
        test_rows.insert(repeat_test, test_ids[repeat_test])
    sample_rows = list(reversed(test_rows))
    write_csv(root / "Train.csv", ["ID", "label"], [[i, int(l)] for i, l in zip(train_ids, labels)])
    write_csv(root / "Test.csv", ["ID"], [[i] for i in test_rows])
    if sample:
        write_csv(root / "SampleSubmission.csv", list(sample_header), [[i, 0] for i in sample_rows])
    if answers:
        write_csv(root / "test_labels.csv", ["ID", "label"], [[i, int(l)] for i, l in zip(test_ids, test_labels)])
    return {
        "train_ids": train_ids, "test_ids": test_ids, "labels": labels, "test_labels": test_labels, "arrays": arrays,
        "test_rows": test_rows, "sample_rows": sample_rows if sample else None,
    }


@pytest.fixture
def zindi(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    root = tmp_path / "data" / "zindi"
    info = make_zindi(root)
    return root, info


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A micro pipeline after a full `dvc repro`, committed (copy it before changing it)."""
    from pipeline import commit_all, dvc, make_repo, stages_run

    repo = make_repo(tmp_path_factory.mktemp("built") / "repo")
    result = dvc(repo, "repro")
    ran = stages_run(result.stdout)
    assert ran.index("synthesize") < ran.index("normalize") < ran.index("smote") < ran.index("map_scene") < ran.index("score_map")
    commit_all(repo, "full run")
    return repo
