"""`landslide-dvc experiments` (also `python -m landslide_dvc.experiments`): queue, report, flags, blend.

    landslide-dvc experiments queue table2 [--preset paper] [--dry-run] [--set key=value ...] [--shard 1/2]
    landslide-dvc experiments report table2 [--csv out.csv] [--docs]
    landslide-dvc experiments flags paper
    landslide-dvc experiments blend NAME[:HEAD] NAME[:HEAD] ... [--method weights|mean|rank] [--docs]
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from landslide_dvc.core.errors import LandslideError
from landslide_dvc.experiments.ensemble import METHODS, comparison_markdown, run_blend
from landslide_dvc.experiments.queue import parse_shard, queue
from landslide_dvc.experiments.report import report, update_docs
from landslide_dvc.experiments.tables import check_keys, known_keys, load_preset, yaml_scalar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="landslide-dvc experiments", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    q = sub.add_parser("queue", help="queue the rows of a table as DVC experiments")
    q.add_argument("table")
    q.add_argument("--preset", help="apply presets/<name>.yaml first (e.g. paper)")
    q.add_argument("--dry-run", action="store_true", help="print the dvc commands instead of running them")
    q.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override for every row")
    q.add_argument("--only", help="comma-separated row names")
    q.add_argument("--shard", metavar="I/N", help="every N-th row from the I-th: this machine's part of the table")
    r = sub.add_parser("report", help="print a table from `dvc exp show --json`")
    r.add_argument("table")
    r.add_argument("--json", type=Path, help="read this saved `dvc exp show --json` output instead")
    r.add_argument("--csv", type=Path, help="write the CSV here (default: print it after the Markdown)")
    r.add_argument("--docs", action="store_true",
                   help="also write the table into its block in docs/results.md (and the README's copy, if any)")
    f = sub.add_parser("flags", help="print a preset as `-S key=value` arguments for `dvc exp run`")
    f.add_argument("preset")
    b = sub.add_parser("blend", help="blend finished experiments' out-of-fold and test probabilities")
    b.add_argument("members", nargs="+", metavar="NAME[:HEAD]",
                   help="experiments (or commits) and the head whose scores each contributes (default: its submit.head)")
    b.add_argument("--method", choices=METHODS, default="weights",
                   help="weights: non-negative, summing to 1, fitted on the OOF log loss (default); mean; rank")
    b.add_argument("--threshold", choices=("0.5", "oof"), default="0.5",
                   help="0.5, or the F1-best threshold on the OOF blend (rank always uses oof)")
    b.add_argument("--out", type=Path, default=Path("blends/blend"), help="folder for submission.csv and blend.json")
    b.add_argument("--docs", action="store_true",
                   help="also write the comparison into the blend block of docs/results.md (and the README's copy)")
    args = parser.parse_args(argv)
    try:
        if args.command == "queue":
            queue(args.table, args.preset, args.dry_run, args.set, args.only.split(",") if args.only else None,
                  parse_shard(args.shard) if args.shard else None)
        elif args.command == "report":
            report(args.table, args.json, args.csv, args.docs)
        elif args.command == "blend":
            summary = run_blend(args.members, args.method, args.threshold, args.out)
            markdown = comparison_markdown(summary)
            print(markdown)
            print(f"wrote {args.out / 'submission.csv'} and {args.out / 'blend.json'}")
            if args.docs:
                update_docs("blend", markdown)
        else:
            known = known_keys()
            values = load_preset(args.preset)
            check_keys(values, known, f"presets/{args.preset}.yaml")
            print(" ".join(f"-S {shlex.quote(f'{k}={yaml_scalar(v)}')}" for k, v in values.items()))
    except LandslideError as exc:
        print(f"experiments: error: {exc}", file=sys.stderr)
        return 1
    return 0

