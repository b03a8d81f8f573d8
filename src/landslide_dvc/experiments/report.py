"""Report a table's finished experiments from `dvc exp show --json`: Markdown and CSV, beside the paper's figures.

``report --docs`` writes the table into its marked block of docs/results.md, the page that holds the
generated tables, and into README.md where the README carries the same markers (its Table 3 summary).
"""


from __future__ import annotations

import csv
import io
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landslide_dvc.core.errors import LandslideError
from landslide_dvc.core.heads import HEADS
from landslide_dvc.experiments.tables import (
    PARAMS_FILE,
    PIPELINES,
    README,
    RESULTS_PAGE,
    SEG_HEAD,
    Row,
    Table,
    flatten,
    load_table,
)


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
