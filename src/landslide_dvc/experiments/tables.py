"""The paper's tables as files: the rows of experiments/<table>.yaml, the presets, and each row's overrides.

Each row of a table file names an experiment, the parameter overrides that define it (the
paper's values), optional `demo` overrides used when no preset is given (the CPU demo keeps
its small input size), the head whose metrics the table shows, and the paper's figures.
`experiments.queue` queues the rows as DVC experiments and `experiments.report` reads them back:

    python -m landslide_dvc.experiments queue table2 [--preset paper] [--dry-run] [--set key=value ...] [--shard 1/2]
    dvc queue start -j 1
    python -m landslide_dvc.experiments report table2 [--csv out.csv] [--docs]
    python -m landslide_dvc.experiments flags paper      # the preset as `-S key=value` arguments

A row may belong to the Landslide4Sense pipeline (``pipeline: l4s``): it is queued as
``dvc exp run --queue l4s/dvc.yaml -S l4s/params.yaml:key=value``, its keys are l4s/params.yaml's
and its figures come from l4s/metrics/; ``head: seg`` reports the U-Net's pixel F1 on the scored
split (l4s/metrics/seg.json) in the Test F1 column. A row may name its own ``baseline`` row (the
U-Net rows are compared with the U-Net from scratch, not with a classifier).
"""


from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from landslide_dvc.core.errors import ParamError
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
