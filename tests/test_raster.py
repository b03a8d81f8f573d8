"""core.raster: GDAL's declared per-band scale and offset, read from a real GeoTIFF and applied."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from landslide_dvc.core.raster import DeclaredScaling


def write(path: Path, data: np.ndarray, scales: list[float] | None = None, offsets: list[float] | None = None) -> None:
    profile = {"driver": "GTiff", "height": data.shape[1], "width": data.shape[2], "count": len(data), "dtype": "float32",
               "crs": "EPSG:32645", "transform": Affine(10, 0, 600000, 0, -10, 3100000)}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if scales is not None:
            dst.scales = scales
        if offsets is not None:
            dst.offsets = offsets


def test_a_declared_offset_turns_stored_numbers_back_into_values(tmp_path: Path) -> None:
    values = np.random.default_rng(0).integers(0, 3000, (3, 8, 8)).astype(np.float32)  # digital numbers
    write(tmp_path / "plain.tif", values)
    write(tmp_path / "offset.tif", values + 1000, scales=[1.0, 1.0, 2.0], offsets=[-1000.0, -1000.0, -2000.0])
    with rasterio.open(tmp_path / "plain.tif") as src:
        plain = DeclaredScaling.of(src)
        assert plain.is_identity and plain.apply(values) is values and plain.describe() == "none declared"
    with rasterio.open(tmp_path / "offset.tif") as src:
        declared = DeclaredScaling.of(src)
        raw = src.read()
    assert declared.scales == (1.0, 1.0, 2.0) and declared.offsets == (-1000.0, -1000.0, -2000.0)
    restored = declared.apply(raw)
    np.testing.assert_array_equal(restored[:2], values[:2])
    np.testing.assert_allclose(restored[2], 2 * values[2], rtol=1e-6)
    assert declared.describe() == "band 1: x 1 + -1000; band 2: x 1 + -1000; band 3: x 2 + -2000"
