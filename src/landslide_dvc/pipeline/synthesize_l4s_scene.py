"""The `synthesize_l4s_scene` stage: l4s/data/scene/, one continuous 14-band Landslide4Sense scene.

The same layout as `synthesize_scene`'s, from the L4S stand-in's landscape and rescaled bands.
"""

from __future__ import annotations

from pathlib import Path

from landslide_dvc.pipeline.synthesize_scene import write_drawn_scene
from landslide_dvc.synthetic.scenes import DrawnScene, SceneParams
from landslide_dvc.synthetic.stand_in_l4s import SynthesizeL4SParams, draw_l4s_scene


def run_synthesize_l4s_scene(params: SceneParams, l4s: SynthesizeL4SParams, out_dir: Path) -> tuple[DrawnScene, int]:
    """The stage: draw the L4S scene (its stand-in's validation/test region) and write it."""
    scene = draw_l4s_scene(params, l4s)
    return scene, write_drawn_scene(scene, params, out_dir, "landslide-dvc synthetic stand-in, Landslide4Sense bands")
