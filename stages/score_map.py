"""DVC stage `score_map`: metrics/map.json + plots/map/scene.png, the scene's map against its known landslides."""

import argparse

from landslide_dvc.pipeline import paths
from landslide_dvc.pipeline.score_map import run_score_map
from landslide_dvc.pipeline.stage import run_stage


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--title", required=True, help="figure title: which model mapped the scene")
    args = parser.parse_args()
    metrics = run_score_map(paths.MAP_FILE, paths.MAP_POLYGONS, paths.SCENE_DIR, paths.MAP_METRICS, paths.MAP_FIGURE, args.title)
    pixel, objects = metrics["pixel"], metrics["objects"]
    print(f"score_map: pixel F1 {pixel['f1']:.3f} (P {pixel['precision']:.3f}, R {pixel['recall']:.3f}, IoU {pixel['iou']:.3f}); "
          f"objects recall {objects['recall']:.3f} ({objects['n_found']}/{objects['n_true']}), "
          f"precision {objects['precision']:.3f} ({objects['n_right']}/{objects['n_pred']}) -> {paths.MAP_METRICS}")


if __name__ == "__main__":
    run_stage("score_map", main)
