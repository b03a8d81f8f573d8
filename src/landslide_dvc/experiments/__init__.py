"""The paper's tables as DVC experiments: the table files (`tables`), queueing their rows (`queue`),
reporting them back (`report`), and blends of finished experiments (`ensemble`); `command` is
`landslide-dvc experiments`."""

from landslide_dvc.experiments.command import main
from landslide_dvc.experiments.queue import parse_shard, queue, shard_rows
from landslide_dvc.experiments.report import (
    ExpRecord,
    build_report,
    parse_exp_show,
    report,
    report_markers,
    update_docs,
)
from landslide_dvc.experiments.tables import HEADS, Row, Table, check_keys, known_keys, load_preset, load_table

__all__ = [
    "HEADS", "ExpRecord", "Row", "Table", "build_report", "check_keys", "known_keys", "load_preset",
    "load_table", "main", "parse_exp_show", "parse_shard", "queue", "report", "report_markers",
    "shard_rows", "update_docs",
]
