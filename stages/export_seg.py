"""DVC stage `export_seg` (l4s/dvc.yaml): models/seg_bundle/, the pickle-free U-Net bundle that `landslide-dvc predict` maps scenes with."""

from landslide_dvc.core.params import read_section
from landslide_dvc.pipeline import paths
from landslide_dvc.pipeline.export_seg import ExportSegParams, run_export_seg
from landslide_dvc.pipeline.stage import run_stage


def main() -> None:
    manifest = run_export_seg(
        read_section(ExportSegParams, "export_seg"),
        model_path=paths.SEG_MODEL,
        train_path=paths.NORMALIZED_TRAIN,
        out_dir=paths.SEG_BUNDLE_DIR,
    )
    arch = manifest["architecture"]
    print(
        f"export_seg: {paths.SEG_BUNDLE_DIR}: U-Net ({arch['encoder']}, depth {arch['encoder_depth']}) on "
        f"{manifest['n_channels']} channels, {manifest['window']} px windows, threshold {manifest['threshold']:g}, "
        f"tta {manifest['tta']}, {len(manifest['files'])} files"
    )


if __name__ == "__main__":
    run_stage("export_seg", main)
