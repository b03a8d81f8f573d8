"""The `synthesize_l4s` stage: the stand-in in the Landslide4Sense layout (TrainData/, ValidData/, TestData/).

The generator is ``landslide_dvc.synthetic.stand_in_l4s``; this stage publishes its folder whole.
"""

from __future__ import annotations

from pathlib import Path

from landslide_dvc.core.io import atomic_path
from landslide_dvc.synthetic.stand_in_l4s import SynthesizeL4SParams, write_l4s_dataset


def run_synthesize_l4s(params: SynthesizeL4SParams, out_dir: Path) -> dict[str, tuple[int, int]]:
    """Write the stand-in to ``out_dir``; per split, (patches, patches with landslide pixels)."""
    with atomic_path(out_dir, directory=True) as tmp:
        return write_l4s_dataset(tmp, params)
