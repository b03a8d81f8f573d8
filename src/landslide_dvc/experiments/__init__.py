"""The paper's tables as DVC experiments (`tables`) and blends of finished experiments (`blend`);
`command` is `landslide-dvc experiments`."""

from landslide_dvc.experiments.command import main
from landslide_dvc.experiments.tables import (
    HEADS,
    ExpRecord,
    Row,
    Table,
    build_report,
    check_keys,
    known_keys,
    load_preset,
    load_table,
    parse_exp_show,
    parse_shard,
    queue,
    report,
    report_markers,
    shard_rows,
    update_docs,
)

__all__ = [
    "HEADS", "ExpRecord", "Row", "Table", "build_report", "check_keys", "known_keys", "load_preset",
    "load_table", "main", "parse_exp_show", "parse_shard", "queue", "report", "report_markers",
    "shard_rows", "update_docs",
]
