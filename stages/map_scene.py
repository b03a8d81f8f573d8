"""DVC stage `map_scene`: maps/scene.tif + maps/scene.gpkg (+ maps/scene.item.json for a dated scene), the scene
(--scene FILE) mapped with a bundle (--bundle DIR)."""

import argparse
from pathlib import Path

from landslide_dvc.core.params import read_section
from landslide_dvc.pipeline import paths
from landslide_dvc.pipeline.map_scene import MapSceneParams, run_map_scene
from landslide_dvc.pipeline.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bundle", type=Path, required=True, help="models/bundle (Zindi) or models/seg_bundle (L4S)")
    parser.add_argument("--scene", type=Path, default=paths.SCENE_FILE,
                        help=f"the scene GeoTIFF (default {paths.SCENE_FILE}; the Zindi pipeline maps {paths.STACKED_SCENE})")
    args = parser.parse_args()
    summary = run_map_scene(read_section(MapSceneParams, "map_scene"), args.bundle, args.scene,
                            paths.MAP_FILE, paths.MAP_POLYGONS)
    print(f"map_scene: {summary}")


if __name__ == "__main__":
    run_stage("map_scene", main)
