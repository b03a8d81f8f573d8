"""DVC stage `export_seg` (l4s/dvc.yaml): models/seg_bundle/, the pickle-free U-Net bundle that `landslide-dvc predict` maps scenes with."""

from landslide_dvc.core.params import read_section
from landslide_dvc.core.segmentation import SegParams
from landslide_dvc.pipeline import paths
from landslide_dvc.pipeline.export_seg import ExportSegParams, RuleTuningParams, run_export_seg
from landslide_dvc.pipeline.h5data import load_masks, load_split
from landslide_dvc.pipeline.stage import run_stage
from landslide_dvc.pipeline.train_seg import split_for_segmentation


def main() -> None:
    params, rules = read_section(ExportSegParams, "export_seg"), read_section(RuleTuningParams, "seg_rules")
    validation = None
    if rules.tune:  # the patches train_seg validated on
        train, test = load_split(paths.NORMALIZED_TRAIN), load_split(paths.NORMALIZED_TEST)
        validation = split_for_segmentation(
            train, test, load_masks(paths.NORMALIZED_TRAIN, len(train.ids)), load_masks(paths.NORMALIZED_TEST, len(test.ids)),
            read_section(SegParams, "seg"),
        )
    manifest = run_export_seg(
        params, model_path=paths.SEG_MODEL, train_path=paths.NORMALIZED_TRAIN, out_dir=paths.SEG_BUNDLE_DIR,
        rules=rules, validation=validation,
    )
    arch = manifest["architecture"]
    print(
        f"export_seg: {paths.SEG_BUNDLE_DIR}: U-Net ({arch['encoder']}, depth {arch['encoder_depth']}) on "
        f"{manifest['n_channels']} channels, {manifest['window']} px windows, threshold {manifest['threshold']:g}, "
        f"tta {manifest['tta']}, {len(manifest['files'])} files"
    )
    if "tuning" in manifest:
        tuning = manifest["tuning"]
        print(f"export_seg: rules chosen on {tuning['validation']}: object F1 {tuning['object']['f1']:.4f} "
              f"({manifest['mapping_rules']}); best pixel F1 {tuning['pixel']['f1']:.4f} at {tuning['pixel']['threshold']:g}")


if __name__ == "__main__":
    run_stage("export_seg", main)
