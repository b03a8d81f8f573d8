"""DVC stage `synthesize_l4s_scene`: l4s/data/scene/ (14 bands) (scene.tif, truth.tif, truth.gpkg) for map_scene and score_map."""

from landslide_dvc.core.params import get_section, load_params
from landslide_dvc.pipeline.paths import SCENE_DIR
from landslide_dvc.pipeline.stage import run_stage
from landslide_dvc.pipeline.synthesize_l4s_scene import run_synthesize_l4s_scene
from landslide_dvc.synthetic.scenes import SceneParams
from landslide_dvc.synthetic.stand_in_l4s import SynthesizeL4SParams


def main() -> None:
    params = load_params()
    scene_params = get_section(params, SceneParams, "scene")
    scene, n_truth = run_synthesize_l4s_scene(scene_params, get_section(params, SynthesizeL4SParams, "synthesize_l4s"), SCENE_DIR)
    print(f"synthesize_l4s_scene: {SCENE_DIR}: {scene_params.size} x {scene_params.size} px, {scene.n_scars} scars placed, "
          f"{n_truth} truth polygons, {scene.scars[scene.valid].mean():.2%} landslide pixels")


if __name__ == "__main__":
    run_stage("synthesize_l4s_scene", main)
