"""Paper tables as DVC experiments: queue the rows of experiments/<table>.yaml, report them back.

    python -m landslide_dvc.experiments queue table2 [--preset paper] [--dry-run] [--set key=value ...] [--shard 1/2]
    dvc queue start -j 1
    python -m landslide_dvc.experiments report table2 [--csv out.csv] [--docs]
    python -m landslide_dvc.experiments flags paper      # the preset as `-S key=value` arguments

Each row of a table file names an experiment, the parameter overrides that define it (the
paper's values), optional `demo` overrides used when no preset is given (the CPU demo keeps
its small input size), the head whose metrics the table shows, and the paper's figures.

``--shard i/n`` queues every n-th row starting at the i-th, so n machines sharing the git and DVC
remotes can each run their part of a table and `dvc exp push` it (docs/scaling.md).

``report --docs`` writes the table into its marked block of docs/results.md, the page that holds the
generated tables, and into README.md where the README carries the same markers (its Table 3 summary).

A row may belong to the Landslide4Sense pipeline (``pipeline: l4s``): it is queued as
``dvc exp run --queue l4s/dvc.yaml -S l4s/params.yaml:key=value``, its keys are l4s/params.yaml's
and its figures come from l4s/metrics/; ``head: seg`` reports the U-Net's pixel F1 on the scored
split (l4s/metrics/seg.json) in the Test F1 column. A row may name its own ``baseline`` row (the
U-Net rows are compared with the U-Net from scratch, not with a classifier).
"""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landslide_dvc.core.errors import LandslideError, ParamError
from landslide_dvc.core.heads import HEADS
from landslide_dvc.core.params import parse_yaml

TABLES_DIR = Path("experiments")
PRESETS_DIR = Path("presets")
PARAMS_FILE = Path("params.yaml")
RESULTS_PAGE = Path("docs/results.md")
README = Path("README.md")
SEG_HEAD = "seg"  # the U-Net of the Landslide4Sense pipeline (l4s rows only)


@dataclass(frozen=True)
class Pipeline:
    """Where a row's experiment lives: its dvc.yaml, params file, presets and metrics."""

    dvc_yaml: str | None  # None: the root dvc.yaml (dvc's default)
    params: Path
    presets: Path
    prefix: str  # of its metrics paths in `dvc exp show`, and of -S file:key values

    def metrics_path(self, head: str) -> str:
        return f"{self.prefix}metrics/seg.json" if head == SEG_HEAD else f"{self.prefix}metrics/heads/{head}.json"


PIPELINES: dict[str, Pipeline] = {
    "zindi": Pipeline(None, PARAMS_FILE, PRESETS_DIR, ""),
    "l4s": Pipeline("l4s/dvc.yaml", Path("l4s/params.yaml"), Path("l4s/presets"), "l4s/"),
}


def flatten(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; dicts inside lists are left alone."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


_PLAIN_STRING = re.compile(r"^[A-Za-z_][A-Za-z0-9_./-]*$")


def yaml_scalar(value: Any) -> str:
    """A value as `dvc exp run -S` reads it back unchanged (Hydra's override grammar, then YAML 1.2).

    Numbers, booleans and null are written as JSON spells them; a string stays plain when it cannot
    be read as anything else (``tf_efficientnetv2_l``, ``data/zindi``) and is single-quoted otherwise
    (``'12'``, ``'true'``, ``'1e-06'``).
    """
    if isinstance(value, str):
        if _PLAIN_STRING.match(value) and parse_yaml(value, "a -S value") == value and value.lower() not in (
            "true", "false", "null", "nan", "inf"
        ):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return json.dumps(value)


@dataclass
class Row:
    name: str
    label: str
    overrides: dict[str, Any]
    demo: dict[str, Any] = field(default_factory=dict)
    head: str | None = None
    paper: dict[str, float | None] = field(default_factory=dict)
    note: str = ""
    pipeline: str = "zindi"  # or l4s (PIPELINES)
    baseline: str | None = None  # the row it is compared with; default: the table's baseline


@dataclass
class Table:
    name: str
    title: str
    head: str  # default head whose metrics are reported
    baseline: str
    # factor columns: {"header": ..., "key": ..., "heads": [...]}; "heads" limits a column to the
    # rows of those heads (Table 3's C means nothing for the FC or LightGBM rows)
    columns: list[dict[str, Any]]
    rows: list[Row]
    requires_preset: str | None = None  # e.g. fig5: ImageNet backbones only make sense with `paper`

    def row_head(self, row: Row) -> str:
        return row.head or self.head

    def row_baseline(self, row: Row) -> str:
        return row.baseline or self.baseline

    @staticmethod
    def column_key(column: dict[str, Any], head: str) -> str:
        """A factor column's key for a row of ``head`` (``key_by_head`` overrides, e.g. seg: seg.encoder)."""
        return str((column.get("key_by_head") or {}).get(head, column["key"]))


def load_table(name: str, root: Path = Path(".")) -> Table:
    """Parse experiments/<name>.yaml and check its structure."""
    path = root / TABLES_DIR / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (root / TABLES_DIR).glob("*.yaml"))
        raise ParamError(f"{path} not found; tables: {', '.join(available) or 'none'}")
    data = parse_yaml(path.read_text(), path)
    try:
        rows = [
            Row(
                name=str(r["name"]),
                label=str(r.get("label", r["name"])),
                overrides=dict(r.get("overrides") or {}),
                demo=dict(r.get("demo") or {}),
                head=r.get("head"),
                paper=dict(r.get("paper") or {}),
                note=str(r.get("note", "")),
                pipeline=str(r.get("pipeline", "zindi")),
                baseline=r.get("baseline"),
            )
            for r in data["rows"]
        ]
        table = Table(
            name=name,
            title=str(data["title"]),
            head=str(data.get("head", "fc")),
            baseline=str(data["baseline"]),
            columns=list(data.get("columns") or []),
            rows=rows,
            requires_preset=data.get("requires_preset"),
        )
    except (KeyError, TypeError) as exc:
        raise ParamError(f"{path} is malformed (missing {exc}); see the other table files for the layout") from None
    names = [r.name for r in rows]
    if len(set(names)) != len(names):
        raise ParamError(f"{path}: row names must be unique")
    if table.baseline not in names:
        raise ParamError(f"{path}: baseline {table.baseline!r} is not a row name")
    for row in rows:
        if row.pipeline not in PIPELINES:
            raise ParamError(f"{path}: row {row.name} has pipeline {row.pipeline!r}; use {' or '.join(PIPELINES)}")
        heads = HEADS + ((SEG_HEAD,) if row.pipeline == "l4s" else ())
        if table.row_head(row) not in heads:
            raise ParamError(f"{path}: row {row.name} has head {table.row_head(row)!r}; use {', '.join(heads)}")
        if table.row_baseline(row) not in names:
            raise ParamError(f"{path}: row {row.name} has baseline {table.row_baseline(row)!r}, not a row name")
    return table


def load_preset(name: str, root: Path = Path("."), pipeline: str = "zindi") -> dict[str, Any]:
    presets = PIPELINES[pipeline].presets
    path = root / presets / f"{name}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in (root / presets).glob("*.yaml"))
        raise ParamError(f"preset {path} not found; presets: {', '.join(available) or 'none'}")
    return flatten(parse_yaml(path.read_text(), path) or {})


def known_keys(root: Path = Path("."), pipeline: str = "zindi") -> dict[str, Any]:
    path = root / PIPELINES[pipeline].params
    return flatten(parse_yaml(path.read_text(), path))


def check_keys(overrides: dict[str, Any], known: dict[str, Any], where: str, params_file: Path = PARAMS_FILE) -> None:
    """Every override must name a real params.yaml key (a leaf, or a whole section mapping)."""
    for key in overrides:
        if key not in known and not any(k.startswith(f"{key}.") for k in known):
            raise ParamError(f"{where}: override {key!r} is not a key of {params_file}; fix the row (or {params_file})")


def row_overrides(table: Table, row: Row, preset: str | None, extra: dict[str, Any], root: Path = Path(".")) -> dict[str, Any]:
    """The full -S set of a row: preset, then the row's overrides, then demo (no preset) and --set.

    The keys are those of the row's pipeline's params file; a preset is looked up among its presets.
    """
    known = known_keys(root, row.pipeline)
    params_file = PIPELINES[row.pipeline].params
    merged: dict[str, Any] = {}
    if preset:
        preset_values = load_preset(preset, root, row.pipeline)
        check_keys(preset_values, known, f"{PIPELINES[row.pipeline].presets}/{preset}.yaml", params_file)
        merged.update(preset_values)
    check_keys(row.overrides, known, f"experiments/{table.name}.yaml row {row.name}", params_file)
    merged.update(row.overrides)
    if not preset:
        check_keys(row.demo, known, f"experiments/{table.name}.yaml row {row.name} (demo)", params_file)
        merged.update(row.demo)
    check_keys(extra, known, "--set", params_file)
    merged.update(extra)
    return merged


def queue_command(name: str, overrides: dict[str, Any], pipeline: str = "zindi") -> list[str]:
    where = PIPELINES[pipeline]
    cmd = ["dvc", "exp", "run", "--queue", "-n", name] + ([where.dvc_yaml] if where.dvc_yaml else [])
    file_prefix = f"{where.params}:" if where.dvc_yaml else ""
    for key, value in overrides.items():
        cmd += ["-S", f"{file_prefix}{key}={yaml_scalar(value)}"]
    return cmd


def parse_sets(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        if "=" not in item:
            raise ParamError(f"--set {item!r} must look like key=value")
        key, value = item.split("=", 1)
        out[key.strip()] = parse_yaml(value, f"--set {item}")
    return out


def _git_clean(paths: list[str]) -> bool:
    result = subprocess.run(["git", "status", "--porcelain", "--", *paths], capture_output=True, text=True)
    return result.returncode == 0 and not result.stdout.strip()


def parse_shard(text: str) -> tuple[int, int]:
    """``i/n`` -> (i, n) with 1 <= i <= n."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ParamError(f"--shard {text!r} must look like i/n with 1 <= i <= n (e.g. 1/2 and 2/2 on two machines)")
    return int(match.group(1)), int(match.group(2))


def shard_rows(rows: list[Row], shard: tuple[int, int] | None) -> list[Row]:
    """Rows i, i + n, i + 2n, ... (1-based) of ``rows``: the n shards split a table between n machines, each
    row in exactly one; round robin, so each shard gets a mix of the table's cheap and costly rows."""
    if shard is None:
        return rows
    index, count = shard
    return rows[index - 1 :: count]


def queue(
    table_name: str,
    preset: str | None,
    dry_run: bool,
    sets: list[str],
    only: list[str] | None,
    shard: tuple[int, int] | None = None,
) -> list[list[str]]:
    """Queue one `dvc exp run --queue` per row (or print them with --dry-run)."""
    table = load_table(table_name)
    if table.requires_preset and preset != table.requires_preset:
        raise ParamError(
            f"{table_name} compares ImageNet-scale backbones; queue it with --preset {table.requires_preset} (on a GPU)"
        )
    extra = parse_sets(sets)
    rows = [row for row in table.rows if not only or row.name in only]
    if only and len(rows) != len(only):
        unknown = sorted(set(only) - {r.name for r in table.rows})
        raise ParamError(f"--only names unknown rows: {', '.join(unknown)}")
    picked = shard_rows(rows, shard)
    commands = [queue_command(row.name, row_overrides(table, row, preset, extra), row.pipeline) for row in picked]
    if dry_run:
        for cmd in commands:
            print(shlex.join(cmd))
        return commands
    tracked = ["dvc.yaml", "dvc.lock", "params.yaml"]
    if any(row.pipeline == "l4s" for row in picked):
        tracked += ["l4s/dvc.yaml", "l4s/dvc.lock", "l4s/params.yaml"]
    if not _git_clean(tracked):
        raise LandslideError(
            "dvc.yaml, dvc.lock or params.yaml has uncommitted changes; queued experiments start from the last "
            "commit, so commit them first (git commit dvc.lock params.yaml) to reuse its cached stages"
        )
    for cmd in commands:
        result = subprocess.run(cmd)
        if result.returncode != 0:
            raise LandslideError(f"`{shlex.join(cmd)}` failed (exit {result.returncode}); see DVC's message above")
    print(f"queued {len(commands)} experiments; run them with `dvc queue start -j 1`, then "
          f"`python -m landslide_dvc.experiments report {table_name}`")
    return commands


# ---------------------------------------------------------------------------------------- report


@dataclass
class ExpRecord:
    name: str
    state: str  # success, failed, queued, running, ...
    params: dict[str, Any]  # params.yaml's, flattened
    metrics: dict[str, Any]
    other_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # e.g. l4s/params.yaml's, flattened

    def params_of(self, pipeline: str) -> dict[str, Any]:
        """The flattened params of the file the row's pipeline reads."""
        path = PIPELINES[pipeline].params
        return self.params if path == PARAMS_FILE else self.other_params.get(path.as_posix(), {})


def parse_exp_show(data: list[dict[str, Any]]) -> dict[str, ExpRecord]:
    """Index `dvc exp show --json` output by experiment name (baseline commits included by name)."""
    records: dict[str, ExpRecord] = {}

    def record(name: str, state: str, entry: dict[str, Any] | None) -> ExpRecord:
        payload = (entry or {}).get("data") or {}
        files = {path: flatten((value or {}).get("data") or {}) for path, value in (payload.get("params") or {}).items()}
        params = files.pop("params.yaml", {})
        metrics = {path: (value or {}).get("data") or {} for path, value in (payload.get("metrics") or {}).items()}
        return ExpRecord(name, state, params, metrics, files)

    for commit in data:
        name = commit.get("name")
        if name and commit.get("rev") != "workspace":
            records.setdefault(name, record(name, "success" if not commit.get("error") else "failed", commit))
        for exp in commit.get("experiments") or []:
            revs = exp.get("revs") or []
            entry = revs[0] if revs else None
            exp_name = exp.get("name") or (entry or {}).get("name")
            if not exp_name:
                continue
            executor = exp.get("executor") or {}
            state = executor.get("state") or ("failed" if (entry or {}).get("error") else "success")
            if entry and entry.get("error") and state == "success":
                state = "failed"
            records[exp_name] = record(exp_name, state, entry)
    return records


def exp_show_json() -> list[dict[str, Any]]:
    result = subprocess.run(
        ["dvc", "exp", "show", "--json", "--all-commits", "--no-fetch"], capture_output=True, text=True
    )
    if result.returncode != 0:
        raise LandslideError(f"`dvc exp show --json` failed: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _delta(value: float | None, base: float | None) -> str:
    if value is None or base is None:
        return "-"
    return f"{value - base:+.4f}"


def row_metrics(table: Table, row: Row, record: ExpRecord | None) -> dict[str, Any]:
    """Our figures for one row (or its state when it has none)."""
    if record is None:
        return {"state": "missing"}
    if record.state != "success":
        return {"state": record.state}
    head = table.row_head(row)
    head_metrics = record.metrics.get(PIPELINES[row.pipeline].metrics_path(head))
    if not head_metrics:
        return {"state": "no metrics"}
    params = record.params_of(row.pipeline)
    mismatched = [k for k, v in row.overrides.items() if k in params and params[k] != v and k not in row.demo]
    state = "params differ" if mismatched else "ok"
    if head == SEG_HEAD:  # the U-Net: pixel F1 on the scored split
        return {"state": state, "train_f1": None, "cv_f1": None, "test_f1": head_metrics.get("pixel_f1")}
    return {
        "state": state,
        "train_f1": (head_metrics.get("train") or {}).get("f1"),
        "cv_f1": (head_metrics.get("cv") or {}).get("f1"),
        "test_f1": (head_metrics.get("test") or {}).get("f1"),
    }


def build_report(table: Table, records: dict[str, ExpRecord]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the report table in the paper's layout with our figures beside the paper's."""
    ours = {row.name: row_metrics(table, row, records.get(row.name)) for row in table.rows}
    by_name = {row.name: row for row in table.rows}

    def score(got: dict[str, Any]) -> float | None:
        return got.get("test_f1") if got.get("test_f1") is not None else got.get("cv_f1")

    header = ["Experiment", "Paper row"] + [c["header"] for c in table.columns]
    header += ["Train F1", "CV F1", "Test F1", "Δ vs baseline", "Paper Train F1", "Paper Test F1", "Paper Δ", "Status"]
    body = []
    for row in table.rows:
        got = ours[row.name]
        record = records.get(row.name)
        params = record.params_of(row.pipeline) if record else {}
        base_name = table.row_baseline(row)
        factors = []
        for column in table.columns:
            head = table.row_head(row)
            key = Table.column_key(column, head)
            if head not in column.get("heads", (*HEADS, SEG_HEAD)):
                factors.append("-")
                continue
            value = params.get(key) if key in params else row.overrides.get(key, "")
            factors.append(_display(value))
        paper_test, paper_base = row.paper.get("test_f1"), by_name[base_name].paper.get("test_f1")
        body.append(
            [row.name, row.label, *factors,
             _fmt(got.get("train_f1")), _fmt(got.get("cv_f1")), _fmt(got.get("test_f1")),
             _delta(score(got), score(ours[base_name])) if got.get("state") in ("ok", "params differ") else "-",
             _fmt(row.paper.get("train_f1")), _fmt(paper_test), _delta(paper_test, paper_base),
             got["state"]]
        )
    return header, body


def _display(value: Any) -> str:
    if value is None:  # a null parameter (no checkpoint file)
        return "-"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    return str(value)


def to_markdown(title: str, header: list[str], body: list[list[str]]) -> str:
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def to_csv(header: list[str], body: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    return buffer.getvalue()


def report_markers(table_name: str) -> tuple[str, str]:
    """The comments that enclose a table's generated block in the docs and the README."""
    return f"<!-- report:{table_name} -->", f"<!-- /report:{table_name} -->"


def replace_block(path: Path, table_name: str, markdown: str) -> bool:
    """Replace the text between the table's markers in ``path``; False when the file has no such block."""
    start, end = report_markers(table_name)
    text = path.read_text() if path.is_file() else ""
    if start not in text or end not in text:
        return False
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    path.write_text(f"{before}{start}\n{markdown}{end}{after}")
    return True


def update_docs(table_name: str, markdown: str, page: Path = RESULTS_PAGE, copies: tuple[Path, ...] = (README,)) -> None:
    """Write a table into its block on the results page, and into each copy that has the same markers.

    The results page must hold the block; a copy (the README, which summarises Table 3) is updated
    only where it carries the markers, so the two never disagree.
    """
    if not replace_block(page, table_name, markdown):
        start, end = report_markers(table_name)
        raise LandslideError(f"{page} has no {start} ... {end} markers for this table; add them where it belongs")
    for copy in copies:
        replace_block(copy, table_name, markdown)


def report(table_name: str, show_json: Path | None, csv_path: Path | None, docs: bool) -> str:
    table = load_table(table_name)
    data = json.loads(show_json.read_text()) if show_json else exp_show_json()
    header, body = build_report(table, parse_exp_show(data))
    markdown = to_markdown(table.title, header, body)
    print(markdown)
    if csv_path:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        csv_path.write_text(to_csv(header, body))
    else:
        print(to_csv(header, body))
    if docs:
        update_docs(table_name, markdown)
    return markdown
