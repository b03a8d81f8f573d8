"""DVC stage `train_seg`: the U-Net segmentation baseline on the Landslide4Sense pixel masks."""

from landslide import paths
from landslide.cli import run_stage
from landslide.h5data import load_masks, load_split
from landslide.params import read_section
from landslide.segmentation import SegParams, run_train_seg, split_for_segmentation


def main() -> None:
    params = read_section(SegParams, "seg")
    train = load_split(paths.NORMALIZED_TRAIN)
    test = load_split(paths.NORMALIZED_TEST)
    data = split_for_segmentation(
        train, test, load_masks(paths.NORMALIZED_TRAIN, len(train.ids)), load_masks(paths.NORMALIZED_TEST, len(test.ids)),
        params,
    )
    metrics = run_train_seg(params, data, paths.SEG_MODEL, paths.SEG_METRICS, paths.SEG_EXAMPLES, paths.SEG_HISTORY)
    print(
        f"train_seg: {data.validation} pixel precision {metrics['pixel_precision']:.4f}, "
        f"recall {metrics['pixel_recall']:.4f}, F1 {metrics['pixel_f1']:.4f}"
    )


if __name__ == "__main__":
    run_stage("train_seg", main)
