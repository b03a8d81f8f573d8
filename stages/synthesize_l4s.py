"""DVC stage `synthesize_l4s`: write the synthetic stand-in in the Landslide4Sense layout."""

from landslide_dvc.core.params import read_section
from landslide_dvc.pipeline.paths import L4S_SYNTHETIC_DIR
from landslide_dvc.pipeline.stage import run_stage
from landslide_dvc.pipeline.synthesize_l4s import run_synthesize_l4s
from landslide_dvc.synthetic.stand_in_l4s import SynthesizeL4SParams


def main() -> None:
    params = read_section(SynthesizeL4SParams, "synthesize_l4s")
    summary = run_synthesize_l4s(params, L4S_SYNTHETIC_DIR)
    counts = ", ".join(f"{split} {n} ({k} with landslide pixels)" for split, (n, k) in summary.items())
    print(f"synthesize_l4s: {counts} in {L4S_SYNTHETIC_DIR}")


if __name__ == "__main__":
    run_stage("synthesize_l4s", main)
