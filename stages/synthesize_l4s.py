"""DVC stage `synthesize_l4s`: write the synthetic stand-in in the Landslide4Sense layout."""

from landslide.cli import run_stage
from landslide.io import atomic_path
from landslide.params import read_section
from landslide.paths import L4S_SYNTHETIC_DIR
from landslide.synthetic_l4s import SynthesizeL4SParams, write_l4s_dataset


def main() -> None:
    params = read_section(SynthesizeL4SParams, "synthesize_l4s")
    with atomic_path(L4S_SYNTHETIC_DIR, directory=True) as tmp:
        summary = write_l4s_dataset(tmp, params)
    counts = ", ".join(f"{split} {n} ({k} with landslide pixels)" for split, (n, k) in summary.items())
    print(f"synthesize_l4s: {counts} in {L4S_SYNTHETIC_DIR}")


if __name__ == "__main__":
    run_stage("synthesize_l4s", main)
