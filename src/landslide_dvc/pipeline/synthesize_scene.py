"""The `synthesize_scene` stage: data/scene/, one continuous Zindi-band scene with known landslides.

The landscape is ``synthetic.scenes``'s, the files ``formats.scene_folder``'s layout; the folder is
published whole (atomically).
"""

from __future__ import annotations

from pathlib import Path

from landslide_dvc.core.io import atomic_path
from landslide_dvc.formats.scene_folder import utm_georef, write_scene_folder
from landslide_dvc.synthetic.scenes import PIXEL_M, DrawnScene, SceneParams, draw_zindi_scene
from landslide_dvc.synthetic.stand_in import SynthesizeParams


def write_drawn_scene(scene: DrawnScene, params: SceneParams, out_dir: Path, source: str) -> int:
    """Write a drawn scene as data/scene/ (atomically); returns the truth polygon count."""
    tags = {"LANDSLIDE_SOURCE": source, "LANDSLIDE_SCARS_PLACED": str(scene.n_scars), "LANDSLIDE_SEED": str(params.seed)}
    with atomic_path(out_dir, directory=True) as tmp:
        return write_scene_folder(
            tmp, scene.bands, scene.band_names, scene.scars, scene.valid,
            utm_georef(params.utm_epsg, params.origin_m, PIXEL_M), tags,
        )


def run_synthesize_scene(params: SceneParams, synth: SynthesizeParams, out_dir: Path) -> tuple[DrawnScene, int]:
    """The stage: draw the Zindi scene (test region, ``synth``'s region shift) and write it."""
    scene = draw_zindi_scene(params, synth)
    return scene, write_drawn_scene(scene, params, out_dir, "landslide-dvc synthetic stand-in, Zindi bands")
