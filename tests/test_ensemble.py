"""`landslide-dvc experiments blend`: members found through their commits' dvc.lock in the DVC cache,
refused when data or folds differ, blended with OOF-fitted weights, scored and written whole."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from landslide_dvc.core.errors import ParamError
from landslide_dvc.experiments import main
from landslide_dvc.experiments.ensemble import blend, empirical_cdf, log_loss_weights
from landslide_dvc.pipeline.crossval import CrossValResult, write_predictions

N_OOF, N_TEST = 200, 80
DATA_HASH = "f6d99b19126b7e326ce76766c60b091d.dir"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def truth(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    oof_labels = (rng.random(N_OOF) < 0.25).astype(np.int8)
    test_labels = (rng.random(N_TEST) < 0.25).astype(np.int8)
    folds = np.arange(N_OOF) % 5
    return oof_labels, test_labels, folds


def noisy_scores(labels: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Probabilities that follow ``labels`` with logit noise ``noise`` (smaller: better model)."""
    rng = np.random.default_rng(seed)
    logits = np.where(labels == 1, 1.5, -1.5) + rng.normal(0, noise, len(labels))
    return 1 / (1 + np.exp(-logits))


class FakeRepo:
    """A git repository with DVC's cache layout and one dvc.lock per committed 'experiment'."""

    def __init__(self, root: Path) -> None:
        self.root = root
        subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
        git(root, "config", "user.name", "t")
        git(root, "config", "user.email", "t@e.x")
        subprocess.run(["dvc", "init", "-q"], cwd=root, check=True, env={**os.environ, "DVC_NO_ANALYTICS": "1"})
        self.oof_labels, self.test_labels, self.folds = truth()
        self.oof_ids = [f"ID_O{k:04d}" for k in range(N_OOF)]
        self.test_ids = [f"ID_T{k:04d}" for k in range(N_TEST)]
        git(root, "add", "-A")
        git(root, "commit", "-qm", "init")
        self.base = git(root, "rev-parse", "HEAD")

    def cache(self, data: bytes) -> str:
        md5 = hashlib.md5(data).hexdigest()
        path = self.root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return md5

    def heads_file(self, scores: dict[str, tuple[np.ndarray, np.ndarray]], folds: np.ndarray, tmp: Path) -> dict[str, str]:
        hashes = {}
        for head, (oof, test) in scores.items():
            result = CrossValResult(
                self.oof_ids, self.oof_labels, oof, folds.astype(np.int8), list(reversed(self.test_ids)),
                test[::-1].copy(), np.repeat(test[::-1, None], 5, axis=1), [0.9] * 5,
            )  # test IDs in another order than the first member's: the blend aligns them by ID
            path = tmp / f"{head}.h5"
            write_predictions(path, result, head=head, threshold=0.5)
            hashes[head] = self.cache(path.read_bytes())
        return hashes

    def experiment(
        self,
        name: str,
        scores: dict[str, tuple[np.ndarray, np.ndarray]],
        *,
        data_hash: str = DATA_HASH,
        folds: np.ndarray | None = None,
        fold_seed: int = 42,
    ) -> str:
        """Commit a dvc.lock whose heads' files are in the cache; point refs/exps/.../name at it."""
        tmp = self.root.parent / f"tmp-{name}"
        tmp.mkdir()
        heads = self.heads_file(scores, self.folds if folds is None else folds, tmp)
        with h5py.File(tmp / "test.h5", "w") as h5:
            h5.create_dataset("submission_ids", data=np.array(self.test_ids + [self.test_ids[3]], dtype=object),
                              dtype=h5py.string_dtype())
            h5.attrs["submission_columns"] = ["ID", "Target"]
        with (tmp / "answers.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["ID", "label"])
            writer.writerows(zip(self.test_ids, self.test_labels.tolist()))
        stages = {
            "normalize": {
                "cmd": "python stages/normalize.py",
                "deps": [{"path": "data/synthetic", "md5": data_hash}],
                "params": {"params.yaml": {"data.dir": "data/synthetic", "folds": {"ids": [0, 1, 2, 3, 4], "seed": fold_seed}}},
                "outs": [
                    {"path": "data/normalized/test.h5", "md5": self.cache((tmp / "test.h5").read_bytes())},
                    {"path": "data/answers/test_labels.csv", "md5": self.cache((tmp / "answers.csv").read_bytes())},
                ],
            },
            "submit": {"cmd": "python stages/submit.py", "params": {"params.yaml": {"submit": {"head": "svm"}}}},
        }
        for head, md5 in heads.items():
            stages[f"fit_head@{head}"] = {"cmd": "x", "outs": [{"path": f"data/heads/{head}.h5", "md5": md5}]}
        shutil.rmtree(tmp)
        git(self.root, "checkout", "-q", "--detach", self.base)
        (self.root / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": stages}))
        git(self.root, "add", "dvc.lock")
        git(self.root, "commit", "-qm", name)
        sha = git(self.root, "rev-parse", "HEAD")
        git(self.root, "update-ref", f"refs/exps/{self.base[:2]}/{self.base[2:]}/{name}", sha)
        git(self.root, "checkout", "-q", "main")
        return sha


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRepo:
    fake = FakeRepo(tmp_path / "repo")
    monkeypatch.chdir(fake.root)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    return fake


def member_scores(fake: FakeRepo, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return noisy_scores(fake.oof_labels, noise, seed), noisy_scores(fake.test_labels, noise, seed + 100)


def test_blend_of_experiments_writes_submission_and_beats_or_matches_its_members(repo: FakeRepo, capsys) -> None:
    good, weak, useless = member_scores(repo, 1.0, 1), member_scores(repo, 1.3, 2), member_scores(repo, 50.0, 3)
    repo.experiment("exp-a", {"svm": good, "fc": useless})
    repo.experiment("exp-b", {"lgbm": weak})
    out = repo.root / "blends" / "ab"
    assert main(["blend", "exp-a", "exp-b:lgbm", "exp-a:fc", "--out", str(out)]) == 0
    summary = json.loads((out / "blend.json").read_text())
    names = [m["name"] for m in summary["members"]]
    assert names == ["exp-a:svm", "exp-b:lgbm", "exp-a:fc"]  # exp-a without a head: its submit.head
    weights = np.array([m["weight"] for m in summary["members"]])
    assert np.all(weights >= 0) and weights.sum() == pytest.approx(1.0)
    assert weights[0] > weights[1] > weights[2]  # the better the member, the larger its weight
    assert weights[2] < 0.05  # pure noise gets (almost) nothing
    assert summary["blend"]["cv"]["f1"] >= max(m["cv"]["f1"] for m in summary["members"]) - 0.02
    assert summary["n_oof"] == N_OOF and "test" in summary["blend"]
    with (out / "submission.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["ID", "Target"] and len(rows) == 1 + N_TEST + 1  # the repeated ID is written twice
    assert rows[1 + N_TEST][0] == repo.test_ids[3] and rows[1 + N_TEST][1] == rows[1 + 3][1]
    printed = capsys.readouterr().out
    assert "**blend (weights)**" in printed and "exp-b:lgbm" in printed
    # the written labels are the blend's test predictions, aligned by ID: they score its reported test F1
    from sklearn.metrics import f1_score

    predicted = {r[0]: int(r[1]) for r in rows[1:]}
    written = np.array([predicted[i] for i in repo.test_ids])
    assert f1_score(repo.test_labels, written) == pytest.approx(summary["blend"]["test"]["f1"])


def test_blend_refuses_different_folds_data_and_unknown_members(repo: FakeRepo, capsys) -> None:
    scores = member_scores(repo, 1.0, 1)
    repo.experiment("base", {"svm": scores})
    repo.experiment("shuffled", {"svm": scores}, folds=np.roll(repo.folds, 1))
    repo.experiment("reseeded", {"svm": scores}, fold_seed=7)
    repo.experiment("other-data", {"svm": scores}, data_hash="0" * 32 + ".dir")
    out = repo.root / "blends" / "x"
    cases = {
        "shuffled": "different fold assignments",
        "reseeded": "different folds params",
        "other-data": "trained on different data",
        "nope": "neither an experiment",
        "base:fc": "did not run fit_head@fc",
    }
    for member, message in cases.items():
        assert main(["blend", "base", member, "--out", str(out)]) == 1
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert main(["blend", "base", "base", "--out", str(out)]) == 1
    assert "listed twice" in capsys.readouterr().err
    assert main(["blend", "base:knn", "shuffled", "--out", str(out)]) == 1
    assert "NAME:HEAD" in capsys.readouterr().err
    assert not out.exists()  # no partial outputs


def test_members_from_a_missing_cache_file_are_refused(repo: FakeRepo, capsys) -> None:
    repo.experiment("a", {"svm": member_scores(repo, 1.0, 1)})
    sha = repo.experiment("b", {"svm": member_scores(repo, 1.5, 2)})
    lock = yaml.safe_load(git(repo.root, "show", f"{sha}:dvc.lock"))
    md5 = lock["stages"]["fit_head@svm"]["outs"][0]["md5"]
    (repo.root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).unlink()
    assert main(["blend", "a", "b", "--out", "blends/y"]) == 1
    err = capsys.readouterr().err
    assert "data/heads/svm.h5 of b" in err and "not in the DVC cache" in err and "dvc exp pull" in err
    assert not (repo.root / "blends").exists()


def test_log_loss_weights_are_a_convex_combination_that_lowers_the_oof_loss() -> None:
    from sklearn.metrics import log_loss

    labels, _, _ = truth(1)
    members = np.stack([noisy_scores(labels, noise, seed) for seed, noise in enumerate((0.8, 1.6, 3.0))], axis=1)
    weights = log_loss_weights(members, labels)
    assert np.all(weights >= 0) and weights.sum() == pytest.approx(1.0)
    mean_loss = log_loss(labels, members.mean(axis=1))
    assert log_loss(labels, members @ weights) <= mean_loss + 1e-12
    # a perfect member takes (nearly) all the weight
    perfect = np.where(labels == 1, 0.99, 0.01)
    weights = log_loss_weights(np.column_stack([members[:, 1], perfect]), labels)
    assert weights[1] > 0.95
    # deterministic
    assert np.array_equal(log_loss_weights(members, labels), log_loss_weights(members, labels))


def test_rank_blend_uses_each_members_oof_scale_and_an_oof_threshold() -> None:
    reference = np.array([0.1, 0.2, 0.2, 0.9])
    assert empirical_cdf(reference, np.array([0.0, 0.2, 1.0])).tolist() == [0.0, 0.5, 1.0]

    class M:  # the fields blend() reads
        def __init__(self, oof: np.ndarray, test: np.ndarray, labels: np.ndarray) -> None:
            self.oof_scores, self.test_scores, self.oof_labels = oof, test, labels
            self.test_ids = [f"T{k}" for k in range(len(test))]

    labels, test_labels, _ = truth(2)
    a = M(noisy_scores(labels, 1.0, 1), noisy_scores(test_labels, 1.0, 2), labels)
    squashed = M(a.oof_scores * 0.01, a.test_scores * 0.01, labels)  # same ranking on another scale
    result = blend([a, squashed], "rank", "0.5")
    assert result.threshold_rule == "oof" and 0 < result.threshold < 1
    assert np.allclose(result.oof_scores, empirical_cdf(a.oof_scores, a.oof_scores))
    mean = blend([a, squashed], "mean", "0.5")
    assert mean.threshold == 0.5 and np.allclose(mean.weights, [0.5, 0.5])
    with pytest.raises(ParamError, match="--method"):
        blend([a, squashed], "median", "0.5")  # type: ignore[arg-type]
