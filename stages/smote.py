"""DVC stage `smote`: SSIM-based SMOTE images for every fold, the Fig. 4 PNG and class counts."""

from landslide.cli import run_stage
from landslide.h5data import load_split
from landslide.params import read_section
from landslide.paths import NORMALIZED_TRAIN, SMOTE_COUNTS, SMOTE_FIGURE, SMOTE_FILE
from landslide.smote import SmoteParams, run_smote


def main() -> None:
    params = read_section(SmoteParams, "smote")
    train = load_split(NORMALIZED_TRAIN)
    counts = run_smote(train, params, SMOTE_FILE, SMOTE_FIGURE, SMOTE_COUNTS)
    print(f"smote: {', '.join(f'fold {k}: {n}' for k, n in enumerate(counts))} synthetic landslide images")


if __name__ == "__main__":
    run_stage("smote", main)
