"""DVC stage `synthesize`: write the synthetic stand-in dataset in the Zindi layout."""

from landslide.cli import run_stage
from landslide.io import atomic_path
from landslide.params import read_section
from landslide.paths import SYNTHETIC_DIR
from landslide.synthetic import SynthesizeParams, write_dataset


def main() -> None:
    params = read_section(SynthesizeParams, "synthesize")
    with atomic_path(SYNTHETIC_DIR, directory=True) as tmp:
        write_dataset(tmp, params)
    print(f"synthesize: {params.n_train} train / {params.n_test} test patches in {SYNTHETIC_DIR}")


if __name__ == "__main__":
    run_stage("synthesize", main)
