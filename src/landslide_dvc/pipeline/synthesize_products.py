"""The `synthesize_products` stage: data/products/, the stand-in scene as the products a user downloads.

Reads data/scene/scene.tif (the 12 Zindi bands) and writes, with ``synthetic.products``,
a Sentinel-2 L2A SAFE folder, Sentinel-1 RTC GeoTIFFs in linear power before and after the event
from both orbits, and their STAC Items; the folder is published whole (atomically).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from landslide_dvc.core.errors import DataError
from landslide_dvc.core.geo import Georef
from landslide_dvc.core.io import atomic_path
from landslide_dvc.synthetic.products import ProductsParams, RenderedProducts, render_products


def read_scene_bands(path: Path) -> tuple[np.ndarray, np.ndarray, Georef]:
    """The scene's bands (C, H, W) float32, where every band has data, and its grid."""
    import rasterio
    from rasterio.errors import RasterioIOError

    try:
        with rasterio.open(path) as src:
            bands = src.read().astype(np.float32)
            valid = (src.read_masks() != 0).all(axis=0)
            georef = Georef(src.crs, src.transform)
    except RasterioIOError:
        raise DataError(f"{path} not found or not a GeoTIFF; run `dvc repro synthesize_scene` first") from None
    if bands.shape[0] != 12:
        raise DataError(f"{path} has {bands.shape[0]} bands; the products are rendered from the 12 Zindi bands")
    return bands, valid & np.isfinite(bands).all(axis=0), georef


def run_synthesize_products(params: ProductsParams, scene: Path, out_dir: Path) -> RenderedProducts:
    """The stage: render ``scene`` as products into ``out_dir`` (whole, atomically); what was written, by final path."""
    bands, valid, georef = read_scene_bands(scene)
    with atomic_path(out_dir, directory=True) as tmp:
        staged = render_products(tmp, bands, valid, georef, params)

    def final(path: Path) -> Path:
        return out_dir / path.relative_to(tmp)

    return RenderedProducts(final(staged.safe), [final(p) for p in staged.s1_items], final(staged.s2_item))
