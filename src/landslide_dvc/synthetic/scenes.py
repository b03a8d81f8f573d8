"""Continuous synthetic scenes with known landslides: what `map_scene` maps and `score_map` scores.

A scene is one landscape of the stand-in's generative model (``synthetic.generate_landscape``),
not a mosaic of patches: terrain, land cover, a river, towns, fields, bare look-alikes, clouds
and the landslide scars the model places, in the test region (with the region shift), so every
scar is known to the pixel. The Zindi scene holds the 12 Zindi bands at the archive's scales
(Sentinel-2 digital numbers, Sentinel-1 dB); the Landslide4Sense scene holds the release's 14
rescaled bands, drawn with its stand-in's landscape (``synthetic_l4s.draw_l4s_scene``). A corner outside the
swath is no data. The grid is UTM with 10 m pixels; the files are ``formats.scene_folder``'s layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landslide_dvc.core.bands import RAW_BANDS
from landslide_dvc.core.params import params_section, require
from landslide_dvc.synthetic.stand_in import (
    ZINDI_LANDSCAPE,
    Landscape,
    LandscapeObjects,
    SynthesizeParams,
    generate_landscape,
)

PIXEL_M = 10.0  # Sentinel-2's 10 m bands (both datasets' patches are at 10 m)


@params_section
class SceneParams:
    """The ``scene:`` section (params.yaml, l4s/params.yaml)."""

    size: int  # side in pixels
    seed: int
    scars_per_km2: float  # landslide scars (Poisson mean per km^2)
    look_alikes_per_km2: float  # bare scars: quarries, road cuts, old scars
    fields_per_km2: float
    town_share: float  # share of the area under towns
    cloud_share: float  # share of the area under opaque clouds
    nodata_share: float  # share of the scene in the no-data corner outside the swath
    utm_epsg: int  # the scene's CRS: a WGS 84 / UTM zone (326xx north, 327xx south)
    origin_m: list[float]  # easting, northing of the upper-left corner (m)

    def validate(self) -> None:
        require(128 <= self.size <= 16384, f"scene.size={self.size} must be in [128, 16384] px")
        require(self.seed >= 0, f"scene.seed={self.seed} must be >= 0")
        for key in ("scars_per_km2", "look_alikes_per_km2", "fields_per_km2"):
            value = getattr(self, key)
            require(0.0 <= value <= 50.0, f"scene.{key}={value} must be in [0, 50]")
        for key in ("town_share", "cloud_share"):
            value = getattr(self, key)
            require(0.0 <= value <= 0.5, f"scene.{key}={value} must be in [0, 0.5]")
        require(0.0 <= self.nodata_share <= 0.25, f"scene.nodata_share={self.nodata_share} must be in [0, 0.25]")
        zone = self.utm_epsg % 100
        require(self.utm_epsg // 100 in (326, 327) and 1 <= zone <= 60,
                f"scene.utm_epsg={self.utm_epsg} is not a WGS 84 / UTM zone; use 32601-32660 (north) or 32701-32760 (south)")
        require(len(self.origin_m) == 2, f"scene.origin_m={list(self.origin_m)} must be [easting, northing] in metres")

    def objects(self) -> LandscapeObjects:
        return LandscapeObjects(
            scars_per_km2=self.scars_per_km2, look_alikes_per_km2=self.look_alikes_per_km2,
            fields_per_km2=self.fields_per_km2, town_share=self.town_share, cloud_share=self.cloud_share,
        )


@dataclass
class DrawnScene:
    """A scene in memory, before it is written."""

    bands: np.ndarray  # (C, H, W) float32 raw values; no-data pixels hold anything
    band_names: list[str]
    scars: np.ndarray  # (H, W) bool: landslide pixels
    valid: np.ndarray  # (H, W) bool: inside the swath
    n_scars: int  # scars the model placed (overlapping ones make one truth polygon)


def swath_mask(size: int, nodata_share: float) -> np.ndarray:
    """(size, size) bool, False in the lower-right corner cut off by a diagonal swath edge.

    The corner is a right triangle with legs ``a`` x the side, a^2 / 2 = ``nodata_share``.
    """
    rows, cols = np.mgrid[0:size, 0:size]
    leg = np.sqrt(2.0 * nodata_share)
    return ((size - 1 - rows) + (size - 1 - cols)) / size >= leg


def draw_landscape(
    params: SceneParams, synth: SynthesizeParams, landscape: Landscape = ZINDI_LANDSCAPE
) -> tuple[np.ndarray, dict[str, np.ndarray], np.random.Generator]:
    """The scene's landscape (test region), its meta and the generator, which drew it and draws on."""
    rng = np.random.default_rng(np.random.SeedSequence(params.seed))
    images, meta = generate_landscape(
        params.size, "test", rng, synth, params.objects(), pixel_km=PIXEL_M / 1000, landscape=landscape
    )
    return images, meta, rng


def draw_zindi_scene(params: SceneParams, synth: SynthesizeParams) -> DrawnScene:
    """The Zindi scene: 12 bands at the archive's scales; ``synth`` gives the region shift."""
    images, meta, _ = draw_landscape(params, synth)
    return DrawnScene(
        bands=np.ascontiguousarray(images[0].transpose(2, 0, 1)), band_names=list(RAW_BANDS),
        scars=meta["scar_mask"][0], valid=swath_mask(params.size, params.nodata_share), n_scars=int(meta["n_scars"][0]),
    )


__all__ = ["PIXEL_M", "DrawnScene", "SceneParams", "draw_landscape", "draw_zindi_scene", "swath_mask"]
