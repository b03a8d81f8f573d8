"""DVC stage `train_seg`: the U-Net segmentation baseline on the Landslide4Sense pixel masks.

With seg.nproc > 1 this script launches torchrun, which runs it again once per rank.
"""

from landslide_dvc.core.distributed import launch
from landslide_dvc.core.params import read_section
from landslide_dvc.core.segmentation import SegParams
from landslide_dvc.pipeline import paths
from landslide_dvc.pipeline.h5data import load_masks, load_split
from landslide_dvc.pipeline.stage import run_stage
from landslide_dvc.pipeline.train_seg import run_train_seg, split_for_segmentation


def main() -> None:
    params = read_section(SegParams, "seg")
    if launch(params.nproc, __file__, [], param="seg.nproc"):
        return  # the ranks have trained the U-Net; rank 0 wrote the outputs
    train = load_split(paths.NORMALIZED_TRAIN)
    test = load_split(paths.NORMALIZED_TEST)
    data = split_for_segmentation(
        train, test, load_masks(paths.NORMALIZED_TRAIN, len(train.ids)), load_masks(paths.NORMALIZED_TEST, len(test.ids)),
        params,
    )
    digests = {"train": str(train.attrs.get("content_digest")), "test": str(test.attrs.get("content_digest"))}
    metrics = run_train_seg(
        params, data, data_digests=digests, out_model=paths.SEG_MODEL, out_metrics=paths.SEG_METRICS,
        out_examples=paths.SEG_EXAMPLES, live_dir=paths.SEG_LIVE_DIR, resume_dir=paths.SEG_RESUME_DIR,
    )
    if metrics is not None:  # rank 0 (or the only process)
        if metrics.get("weights_stem_map"):  # multispectral weights: which filter each channel started from
            print(f"train_seg: stem {metrics['weights_stem']}: {metrics['weights_stem_map']}")
        print(
            f"train_seg: {data.validation} pixel precision {metrics['pixel_precision']:.4f}, "
            f"recall {metrics['pixel_recall']:.4f}, F1 {metrics['pixel_f1']:.4f}"
        )


if __name__ == "__main__":
    run_stage("train_seg", main)
