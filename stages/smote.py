"""DVC stage `smote`: SSIM-based SMOTE images for every fold, the Fig. 4 PNG and class counts."""

from landslide_dvc.core.params import read_section
from landslide_dvc.pipeline.h5data import load_split
from landslide_dvc.pipeline.paths import NORMALIZED_TRAIN, SMOTE_COUNTS, SMOTE_FIGURE, SMOTE_FILE
from landslide_dvc.pipeline.smote import SmoteParams, run_smote
from landslide_dvc.pipeline.stage import run_stage


def main() -> None:
    params = read_section(SmoteParams, "smote")
    train = load_split(NORMALIZED_TRAIN)
    counts = run_smote(train, params, SMOTE_FILE, SMOTE_FIGURE, SMOTE_COUNTS)
    print(f"smote: {', '.join(f'fold {k}: {n}' for k, n in enumerate(counts))} synthetic landslide images")


if __name__ == "__main__":
    run_stage("smote", main)
