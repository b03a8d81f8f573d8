"""DVC stage `synthesize`: write the synthetic stand-in dataset in the Zindi layout."""

from landslide_dvc.core.params import read_section
from landslide_dvc.pipeline.paths import SYNTHETIC_DIR
from landslide_dvc.pipeline.stage import run_stage
from landslide_dvc.pipeline.synthesize import run_synthesize
from landslide_dvc.synthetic.stand_in import SynthesizeParams


def main() -> None:
    params = read_section(SynthesizeParams, "synthesize")
    run_synthesize(params, SYNTHETIC_DIR)
    print(f"synthesize: {params.n_train} train / {params.n_test} test patches in {SYNTHETIC_DIR}")


if __name__ == "__main__":
    run_stage("synthesize", main)
