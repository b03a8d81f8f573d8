"""The `stack_scene` stage: data/stacked/, the scene `landslide-dvc stack` builds from data/products/.

The inputs are what a user passes: the Sentinel-2 SAFE folders and the Sentinel-1 STAC Items of
the products folder, with the event date. The outputs are stack's own: the scene COG, its
provenance JSON and its STAC Item, which `map_scene` maps (and whose date the map's Item takes).
"""

from __future__ import annotations

from pathlib import Path

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.io import atomic_path
from landslide_dvc.core.params import params_section, require
from landslide_dvc.serve.stack import SCL_CLASSES, StackOptions, run_stack
from landslide_dvc.synthetic.products import ProductsParams


@params_section
class StackSceneParams:
    """The ``stack_scene:`` section."""

    mask_scl: list[int]  # SCL classes that become no-data (as stack's --mask-scl); [] keeps clouds, as the Zindi data does

    def validate(self) -> None:
        unknown = [c for c in self.mask_scl if c not in SCL_CLASSES]
        require(not unknown, f"stack_scene.mask_scl={self.mask_scl} holds {unknown}, not SCL classes; use 0-11")


def stack_inputs(products: Path) -> list[Path]:
    """The folder's Sentinel-2 SAFE folders and Sentinel-1 Items (the Sentinel-2 Items describe the SAFE's files again)."""
    safes = sorted(products.glob("*.SAFE"))
    s1_items = sorted(products.glob("S1*.json"))
    if not safes or not s1_items:
        raise DataError(f"{products} holds no Sentinel-2 SAFE folder or no Sentinel-1 Item; run `dvc repro synthesize_products`")
    return [*safes, *s1_items]


def run_stack_scene(params: StackSceneParams, products_params: ProductsParams, products: Path, out_dir: Path, scene_name: str) -> str:
    """The stage: stack the products into ``out_dir``/``scene_name`` (the folder whole, atomically); stack's summary."""
    options = StackOptions(event_date=products_params.event, mask_scl=tuple(params.mask_scl))
    with atomic_path(out_dir, directory=True) as tmp:
        summary = run_stack(stack_inputs(products), tmp / scene_name, options)
    return summary.replace(str(tmp), str(out_dir))
