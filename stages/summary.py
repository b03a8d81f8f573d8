"""DVC stage `summary`: metrics/summary.json, the headline figures `dvc exp show` compares."""

import argparse
from pathlib import Path

from landslide_dvc.pipeline.stage import run_stage
from landslide_dvc.pipeline.summary import run_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--head-metrics", type=Path, help="the submitted head's metrics/heads/HEAD.json (Zindi)")
    parser.add_argument("--seg-metrics", type=Path, help="the U-Net's metrics/seg.json (Landslide4Sense)")
    parser.add_argument("--map-metrics", type=Path, required=True, help="score_map's metrics/map.json")
    parser.add_argument("--section", help="write the figures under this key (l4s: unique names in `dvc exp show`)")
    args = parser.parse_args()
    out = Path("metrics/summary.json")
    summary = run_summary(
        head_metrics=args.head_metrics, seg_metrics=args.seg_metrics, map_metrics=args.map_metrics, out=out, section=args.section
    )
    print("summary: " + ", ".join(f"{key} {value:.4f}" for key, value in summary.items()) + f" -> {out}")


if __name__ == "__main__":
    run_stage("summary", main)
