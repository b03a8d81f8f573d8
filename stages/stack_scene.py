"""DVC stage `stack_scene`: data/stacked/ (scene.tif, its provenance and STAC Item), stacked from data/products/."""

from landslide_dvc.core.params import get_section, load_params
from landslide_dvc.pipeline.paths import PRODUCTS_DIR, STACKED_DIR, STACKED_SCENE
from landslide_dvc.pipeline.stack_scene import StackSceneParams, run_stack_scene
from landslide_dvc.pipeline.stage import run_stage
from landslide_dvc.synthetic.products import ProductsParams


def main() -> None:
    params = load_params()
    summary = run_stack_scene(get_section(params, StackSceneParams, "stack_scene"), get_section(params, ProductsParams, "products"),
                              PRODUCTS_DIR, STACKED_DIR, STACKED_SCENE.name)
    print(f"stack_scene: {summary}")


if __name__ == "__main__":
    run_stage("stack_scene", main)
