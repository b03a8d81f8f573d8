"""Blends of finished experiments: their out-of-fold (OOF) and test probabilities, combined.

    landslide-dvc experiments blend t3-svm-c0.75 t3-lgbm t2-robust:fc [--method mean|rank|weights]

A member is ``NAME[:HEAD]``: an experiment name (``dvc exp show``), a branch or a commit, and the head
whose scores it contributes (a head of ``core.heads.HEADS``; default: the head that experiment submits,
``submit.head``). Each member's scores are its own ``data/heads/<head>.h5``, found through the
experiment commit's dvc.lock in the DVC cache, so nothing is rerun and the workspace is not touched.

Methods, all fitted on the OOF predictions only (the test answers are only scored):

- ``mean``: the average probability;
- ``rank``: the average of each member's empirical CDF (test scores ranked against the member's own
  OOF scores), for members whose scores are on different scales; a rank is not a probability, so the
  threshold is chosen on the OOF blend;
- ``weights``: non-negative weights summing to one that minimise the OOF log loss (SLSQP from
  equal weights; deterministic).

Members must share the data (the dataset folder's hash in their dvc.lock) and the fold assignment
(the folds params and every OOF image's fold); otherwise the OOF blend would mix predictions made
with different validation sets, and the command refuses them. It writes
``<out>/submission.csv`` (the challenge file, as the submit stage writes it) and ``<out>/blend.json``
(weights, threshold, and the CV/test F1 of the blend and of every member under the same threshold
rule), and prints the comparison; ``--docs`` writes it into the ``blend`` block of docs/results.md
and the README's copy.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from landslide_dvc.core.errors import DataError, LandslideError, ParamError
from landslide_dvc.core.heads import HEADS
from landslide_dvc.core.io import atomic_paths
from landslide_dvc.core.metrics import best_threshold, read_answers, scores_metrics
from landslide_dvc.core.submission import submission_rows, write_submission
from landslide_dvc.pipeline.h5data import open_h5, read_strings

Method = Literal["mean", "rank", "weights"]
METHODS: tuple[str, ...] = ("mean", "rank", "weights")
LOCK_FILE = "dvc.lock"
TEST_SPLIT = "data/normalized/test.h5"  # submission_ids and the sample file's header
ANSWERS = "data/answers/test_labels.csv"


@dataclass
class Member:
    """One experiment's head: its OOF and test scores and what they were computed from."""

    name: str  # NAME[:HEAD] as given
    head: str
    rev: str  # the commit the experiment's results are in
    data_hash: str  # md5 of the dataset folder the normalize stage read
    folds: dict[str, Any]  # the folds params
    lock: dict[str, Any]
    oof_ids: list[str]
    oof_labels: np.ndarray
    oof_folds: np.ndarray
    oof_scores: np.ndarray
    test_ids: list[str]
    test_scores: np.ndarray


@dataclass
class Blend:
    method: str
    weights: np.ndarray
    threshold_rule: str  # "0.5" or "oof"
    threshold: float
    oof_scores: np.ndarray
    test_scores: np.ndarray
    member_test_scores: np.ndarray  # (n_test, n_members) as the members gave them, in the first member's ID order


# ------------------------------------------------------------------------------ finding members


def _git(*args: str) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise LandslideError(f"`git {' '.join(args)}` failed: {result.stderr.strip()}")
    return result.stdout


def experiment_commits() -> dict[str, list[str]]:
    """Experiment name -> the commits of the experiments of that name (refs/exps/<baseline>/<name>)."""
    found: dict[str, list[str]] = {}
    for line in _git("for-each-ref", "--format=%(refname) %(objectname)", "refs/exps").splitlines():
        ref, sha = line.split()
        parts = ref.split("/")
        if len(parts) >= 5 and parts[2] != "celery":  # refs/exps/xx/yyyy.../name; celery/stash is the queue
            found.setdefault(parts[-1], []).append(sha)
    return found


def resolve_rev(name: str, experiments: dict[str, list[str]]) -> str:
    """The commit of experiment ``name``, or of the branch/commit ``name``."""
    shas = experiments.get(name, [])
    if len(shas) > 1:
        raise ParamError(
            f"experiment name {name} is used by {len(shas)} experiments ({', '.join(s[:7] for s in shas)}); "
            "pass the commit of the one to blend"
        )
    if shas:
        return shas[0]
    result = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{name}^{{commit}}"], capture_output=True, text=True)
    if result.returncode != 0:
        raise ParamError(f"{name} is neither an experiment (`dvc exp ls -A`) nor a git revision; check the name")
    return result.stdout.strip()


def parse_member(text: str) -> tuple[str, str | None]:
    """``NAME[:HEAD]`` -> (name, head or None)."""
    name, _, head = text.partition(":")
    if not name or (head and head not in HEADS):
        raise ParamError(f"blend member {text!r} must be NAME or NAME:HEAD with HEAD one of {', '.join(HEADS)}")
    return name, head or None


def lock_at(rev: str, name: str) -> dict[str, Any]:
    try:
        return yaml.safe_load(_git("show", f"{rev}:{LOCK_FILE}"))
    except LandslideError:
        raise DataError(f"{name} ({rev[:7]}) has no {LOCK_FILE}; blend experiments that ran `dvc repro`") from None


def stage_entry(lock: dict[str, Any], stage: str, name: str) -> dict[str, Any]:
    entry = (lock.get("stages") or {}).get(stage)
    if entry is None:
        raise DataError(f"{name}: its {LOCK_FILE} has no stage {stage}; blend experiments of the Zindi pipeline")
    return entry


def out_hash(lock: dict[str, Any], stage: str, path: str, name: str) -> str:
    for out in stage_entry(lock, stage, name).get("outs", []):
        if out["path"] == path:
            return out["md5"]
    raise DataError(f"{name}: stage {stage} of its {LOCK_FILE} records no output {path}")


def cached_path(md5: str, path: str, name: str, cache: Any) -> Path:
    """The DVC cache's copy of output ``path`` of experiment ``name``."""
    file = Path(cache.oid_to_path(md5))
    if not file.is_file():
        raise DataError(
            f"{path} of {name} ({md5}) is not in the DVC cache; fetch it with `dvc exp pull <remote> {name}` "
            "or `dvc pull`"
        )
    return file


def submitted_head(lock: dict[str, Any], name: str) -> str:
    params = stage_entry(lock, "submit", name).get("params", {}).get("params.yaml", {})
    head = params.get("submit.head", (params.get("submit") or {}).get("head"))
    if head not in HEADS:
        raise DataError(f"{name}: its {LOCK_FILE} records no submit.head; name the head as {name}:svm")
    return head


def data_fingerprint(lock: dict[str, Any], name: str) -> tuple[str, dict[str, Any]]:
    """(md5 of the dataset folder the normalize stage read, the folds params)."""
    entry = stage_entry(lock, "normalize", name)
    params = entry.get("params", {}).get("params.yaml", {})
    data_dir = params.get("data.dir")
    hashes = [dep["md5"] for dep in entry.get("deps", []) if dep["path"] == data_dir]
    if not hashes:
        raise DataError(f"{name}: the normalize stage of its {LOCK_FILE} records no hash of {data_dir}")
    return hashes[0], params.get("folds", {})


def load_member(text: str, experiments: dict[str, list[str]], cache: Any) -> Member:
    name, head = parse_member(text)
    rev = resolve_rev(name, experiments)
    lock = lock_at(rev, name)
    head = head or submitted_head(lock, name)
    data_hash, folds = data_fingerprint(lock, name)
    path = f"data/heads/{head}.h5"
    if f"fit_head@{head}" not in (lock.get("stages") or {}):
        raise DataError(f"{name} ({rev[:7]}) did not run fit_head@{head}; blend a head it ran, or the NAME:svm default")
    file = cached_path(out_hash(lock, f"fit_head@{head}", path, name), path, name, cache)
    with open_h5(file, f"fit_head@{head}") as h5:
        member = Member(
            name=f"{name}:{head}",
            head=head,
            rev=rev,
            data_hash=data_hash,
            folds=folds,
            lock=lock,
            oof_ids=read_strings(h5["oof/ids"]),
            oof_labels=h5["oof/labels"][()].astype(np.int8),
            oof_folds=h5["oof/fold"][()].astype(np.int64),
            oof_scores=h5["oof/score"][()].astype(np.float64),
            test_ids=read_strings(h5["test/ids"]),
            test_scores=h5["test/score"][()].astype(np.float64),
        )
    for part in ("oof", "test"):
        scores = getattr(member, f"{part}_scores")
        if not np.all(np.isfinite(scores)) or scores.min() < 0 or scores.max() > 1:
            raise DataError(f"{member.name}: its {part} scores in {path} are not probabilities in [0, 1]; rerun the head")
    return member


# ---------------------------------------------------------------------------------- compatibility


def check_compatible(members: list[Member]) -> None:
    """Refuse members that saw different data, folds or images (one-line errors naming both)."""
    if len({m.name for m in members}) != len(members):
        raise ParamError("a blend member is listed twice; list each NAME:HEAD once")
    first = members[0]
    for other in members[1:]:
        pair = f"{first.name} and {other.name}"
        if other.data_hash != first.data_hash:
            raise DataError(
                f"{pair} were trained on different data ({first.data_hash[:12]} vs {other.data_hash[:12]}); "
                "blend experiments of one dataset"
            )
        if other.folds != first.folds:
            raise DataError(f"{pair} use different folds params ({first.folds} vs {other.folds}); blend one fold split")
        if other.oof_ids != first.oof_ids or not np.array_equal(other.oof_labels, first.oof_labels):
            raise DataError(f"{pair} hold different out-of-fold images or labels; blend experiments of one dataset")
        if not np.array_equal(other.oof_folds, first.oof_folds):
            raise DataError(f"{pair} were trained on different fold assignments; blend experiments of one fold split")
        if sorted(other.test_ids) != sorted(first.test_ids):
            raise DataError(f"{pair} scored different test images; blend experiments of one dataset")


def aligned_test_scores(members: list[Member]) -> np.ndarray:
    """(n_test, n_members) test scores in the first member's ID order."""
    order = members[0].test_ids
    columns = []
    for member in members:
        position = {sample_id: k for k, sample_id in enumerate(member.test_ids)}
        columns.append(member.test_scores[[position[sample_id] for sample_id in order]])
    return np.stack(columns, axis=1)


# ------------------------------------------------------------------------------------- blending


def empirical_cdf(reference: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """The share of ``reference`` below each score (ties count half): a rank on the OOF scale."""
    ordered = np.sort(reference)
    below = np.searchsorted(ordered, scores, side="left")
    at_or_below = np.searchsorted(ordered, scores, side="right")
    return (below + at_or_below) / (2.0 * len(ordered))


def log_loss_weights(oof: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Non-negative weights summing to one that minimise the log loss of ``oof @ w`` (SLSQP, equal start)."""
    from scipy.optimize import minimize

    n_members = oof.shape[1]
    eps = 1e-7
    y = labels.astype(np.float64)

    def loss(weights: np.ndarray) -> float:
        p = np.clip(oof @ weights, eps, 1 - eps)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    def gradient(weights: np.ndarray) -> np.ndarray:
        p = np.clip(oof @ weights, eps, 1 - eps)
        return -((y / p - (1 - y) / (1 - p))[:, None] * oof).mean(axis=0)

    start = np.full(n_members, 1.0 / n_members)
    result = minimize(
        loss,
        start,
        jac=gradient,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * n_members,
        constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    weights = np.clip(result.x, 0.0, None)
    weights = weights / weights.sum()
    return weights if loss(weights) <= loss(start) else start  # never worse than the mean on the OOF


def blend(members: list[Member], method: Method, threshold_rule: str) -> Blend:
    """Combine the members' scores; weights and any threshold come from the OOF predictions only."""
    if method not in METHODS:
        raise ParamError(f"--method {method} must be one of {', '.join(METHODS)}")
    if threshold_rule not in ("0.5", "oof"):
        raise ParamError(f"--threshold {threshold_rule} must be 0.5 or oof")
    labels = members[0].oof_labels
    oof = np.stack([m.oof_scores for m in members], axis=1)
    test = member_test = aligned_test_scores(members)
    if method == "rank":
        test = np.stack([empirical_cdf(oof[:, j], test[:, j]) for j in range(oof.shape[1])], axis=1)
        oof = np.stack([empirical_cdf(oof[:, j], oof[:, j]) for j in range(oof.shape[1])], axis=1)
        threshold_rule = "oof"  # a rank has no natural 0.5
    n_members = len(members)
    weights = log_loss_weights(oof, labels) if method == "weights" else np.full(n_members, 1.0 / n_members)
    oof_blend, test_blend = oof @ weights, test @ weights
    threshold = best_threshold(labels, oof_blend) if threshold_rule == "oof" else 0.5
    return Blend(method, weights, threshold_rule, float(threshold), oof_blend, test_blend, member_test)


def figures(labels: np.ndarray, oof: np.ndarray, answers: np.ndarray | None, test: np.ndarray, threshold: float) -> dict[str, Any]:
    out: dict[str, Any] = {"threshold": threshold, "cv": scores_metrics(labels, oof, threshold)}
    if answers is not None:
        out["test"] = scores_metrics(answers, test, threshold)
    return out


def member_figures(member: Member, threshold_rule: str, answers: np.ndarray | None, test: np.ndarray) -> dict[str, Any]:
    """A member's figures under the blend's threshold rule (0.5, or its own OOF-chosen threshold)."""
    threshold = best_threshold(member.oof_labels, member.oof_scores) if threshold_rule == "oof" else 0.5
    return figures(member.oof_labels, member.oof_scores, answers, test, float(threshold))


# ------------------------------------------------------------------------------------- outputs


def read_submission_layout(member: Member, cache: Any) -> tuple[list[str], list[str]]:
    """(submission_ids, header) of the test split the first member was scored on."""
    file = cached_path(out_hash(member.lock, "normalize", TEST_SPLIT, member.name), TEST_SPLIT, member.name, cache)
    with open_h5(file, "normalize") as h5:
        order = read_strings(h5["submission_ids"])
        columns = [c.decode() if isinstance(c, bytes) else str(c) for c in h5.attrs["submission_columns"]]
    return order, columns


def read_test_answers(member: Member, cache: Any) -> np.ndarray | None:
    """The synthetic test answers the first member was scored against (None for real data: no answers)."""
    try:
        md5 = out_hash(member.lock, "normalize", ANSWERS, member.name)
    except DataError:
        return None
    return read_answers(cached_path(md5, ANSWERS, member.name, cache), member.test_ids)


def comparison_markdown(summary: dict[str, Any]) -> str:
    """The blend against each member: CV and test F1 under one threshold rule."""
    rule = "each model's own F1-best OOF threshold" if summary["threshold_rule"] == "oof" else "threshold 0.5"
    names = ", ".join(m["name"] for m in summary["members"])
    lines = [
        f"**Blend ({summary['method']}) of {names}; {rule}**",
        "",
        "| Model | Weight | Threshold | CV F1 | CV precision / recall | Test F1 | Test precision / recall |",
        "|---|---|---|---|---|---|---|",
    ]

    def row(label: str, weight: str, got: dict[str, Any]) -> str:
        cv, test = got["cv"], got.get("test")
        test_cells = (f"{test['f1']:.4f}", f"{test['precision']:.3f} / {test['recall']:.3f}") if test else ("-", "-")
        return (f"| {label} | {weight} | {got['threshold']:.3f} | {cv['f1']:.4f} | "
                f"{cv['precision']:.3f} / {cv['recall']:.3f} | {test_cells[0]} | {test_cells[1]} |")

    for member in summary["members"]:
        lines.append(row(member["name"], f"{member['weight']:.3f}", member))
    lines.append(row(f"**blend ({summary['method']})**", "1", summary["blend"]))
    best = max(summary["members"], key=lambda m: m["cv"]["f1"])
    delta_cv = summary["blend"]["cv"]["f1"] - best["cv"]["f1"]
    text = f"\nAgainst its best member by CV F1 ({best['name']}): CV F1 {delta_cv:+.4f}"
    if "test" in summary["blend"] and "test" in best:
        text += f", test F1 {summary['blend']['test']['f1'] - best['test']['f1']:+.4f}"
    return "\n".join(lines) + "\n" + text + ".\n"


def run_blend(member_names: list[str], method: Method, threshold_rule: str, out_dir: Path, repo: Path = Path(".")) -> dict[str, Any]:
    """Load, check, blend, score; write ``out_dir``/submission.csv and blend.json whole; return the summary."""
    if len(member_names) < 2:
        raise ParamError("blend needs at least two members (NAME[:HEAD] ...)")
    from dvc.repo import Repo

    cache = Repo(str(repo)).cache.local
    experiments = experiment_commits()
    members = [load_member(text, experiments, cache) for text in member_names]
    check_compatible(members)
    result = blend(members, method, threshold_rule)
    answers = read_test_answers(members[0], cache)
    test_columns = result.member_test_scores
    summary: dict[str, Any] = {
        "method": method,
        "threshold_rule": result.threshold_rule,
        "n_oof": len(members[0].oof_ids),
        "n_test": len(members[0].test_ids),
        "members": [
            {"name": m.name, "rev": m.rev, "weight": float(w), **member_figures(m, result.threshold_rule, answers, test_columns[:, j])}
            for j, (m, w) in enumerate(zip(members, result.weights))
        ],
        "blend": figures(members[0].oof_labels, result.oof_scores, answers, result.test_scores, result.threshold),
    }
    order, columns = read_submission_layout(members[0], cache)
    labels = (result.test_scores >= result.threshold).astype(np.int8)
    rows = submission_rows(members[0].test_ids, labels, order, columns)
    with atomic_paths(out_dir / "submission.csv", out_dir / "blend.json") as (tmp_submission, tmp_summary):
        write_submission(tmp_submission, columns, rows)
        tmp_summary.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary
