"""Queue the rows of a table as DVC experiments (`dvc exp run --queue`), all of them or one machine's shard.

``--shard i/n`` queues every n-th row starting at the i-th, so n machines sharing the git and DVC
remotes can each run their part of a table and `dvc exp push` it (docs/scaling.md).
"""


from __future__ import annotations

import re
import shlex
import subprocess
from typing import Any

from landslide_dvc.core.errors import LandslideError, ParamError
from landslide_dvc.core.params import parse_yaml
from landslide_dvc.experiments.tables import PIPELINES, Row, load_table, row_overrides, yaml_scalar


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
