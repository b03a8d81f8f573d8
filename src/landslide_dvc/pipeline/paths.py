"""Output locations of the pipeline stages (the same paths dvc.yaml declares)."""

from __future__ import annotations

from pathlib import Path

SYNTHETIC_DIR = Path("data/synthetic")
NORMALIZED_TRAIN = Path("data/normalized/train.h5")
NORMALIZED_TEST = Path("data/normalized/test.h5")
TEST_ANSWERS = Path("data/answers/test_labels.csv")
SMOTE_FILE = Path("data/smote/synthetic.h5")
SMOTE_FIGURE = Path("plots/smote/fig4.png")
SMOTE_COUNTS = Path("plots/smote/class_counts.json")


def fold_model(fold: int) -> Path:
    return Path(f"models/fold_{fold}.pt")


def fold_resume_dir(fold: int) -> Path:
    return Path(f"models/resume/fold_{fold}")


def fold_oof(fold: int) -> Path:
    return Path(f"data/oof/fold_{fold}.h5")


def fold_metrics(fold: int) -> Path:
    return Path(f"metrics/train_fold/{fold}.json")


def fold_live_dir(fold: int) -> Path:
    return Path(f"dvclive/train_fold/{fold}")


def fold_embeddings(fold: int) -> Path:
    return Path(f"data/embeddings/fold_{fold}.h5")


def head_predictions(head: str) -> Path:
    return Path(f"data/heads/{head}.h5")


def head_metrics(head: str) -> Path:
    return Path(f"metrics/heads/{head}.json")


def head_plots_dir(head: str) -> Path:
    return Path(f"plots/heads/{head}")


SUBMISSION = Path("submissions/submission.csv")
SUBMIT_METRICS = Path("metrics/submit.json")
EXPLAIN_DIR = Path("plots/explain")
REFERENCE_PREDICTIONS = Path("data/reference/stats_gbm.h5")
REFERENCE_METRICS = Path("metrics/reference/stats_gbm.json")
BUNDLE_DIR = Path("models/bundle")

# The Landslide4Sense pipeline (l4s/dvc.yaml) runs in l4s/, so the paths above land under l4s/.
L4S_SYNTHETIC_DIR = Path("data/synthetic_l4s")
SEG_MODEL = Path("models/seg/unet.pt")
SEG_METRICS = Path("metrics/seg.json")
SEG_EXAMPLES = Path("plots/seg/examples.png")
SEG_LIVE_DIR = Path("dvclive/train_seg")
SEG_RESUME_DIR = Path("models/resume/seg")
SEG_BUNDLE_DIR = Path("models/seg_bundle")

# The scene with known landslides, its map and the map's scores (both pipelines; L4S's under l4s/).
SCENE_DIR = Path("data/scene")
SCENE_FILE = SCENE_DIR / "scene.tif"
PRODUCTS_DIR = Path("data/products")  # the scene as downloaded products (synthesize_products)
STACKED_DIR = Path("data/stacked")  # the scene stack builds from them (stack_scene), which map_scene maps
STACKED_SCENE = STACKED_DIR / "scene.tif"
MAP_FILE = Path("maps/scene.tif")
MAP_POLYGONS = Path("maps/scene.gpkg")
MAP_ITEM = Path("maps/scene.item.json")  # written where the scene is dated (the stacked scene's Item)
MAP_METRICS = Path("metrics/map.json")
MAP_FIGURE = Path("plots/map/scene.png")
