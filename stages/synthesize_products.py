"""DVC stage `synthesize_products`: data/products/, data/scene/scene.tif as the products a user downloads."""

from landslide_dvc.core.params import read_section
from landslide_dvc.pipeline.paths import PRODUCTS_DIR, SCENE_FILE
from landslide_dvc.pipeline.stage import run_stage
from landslide_dvc.pipeline.synthesize_products import run_synthesize_products
from landslide_dvc.synthetic.products import ProductsParams


def main() -> None:
    params = read_section(ProductsParams, "products")
    products = run_synthesize_products(params, SCENE_FILE, PRODUCTS_DIR)
    print(f"synthesize_products: {PRODUCTS_DIR}: {products.safe.name} (baseline {params.processing_baseline}, "
          f"offset {params.offset}), {len(products.s1_items)} Sentinel-1 RTC acquisitions (linear power), their STAC Items")


if __name__ == "__main__":
    run_stage("synthesize_products", main)
