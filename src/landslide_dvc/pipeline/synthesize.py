"""The `synthesize` stage: the embedded synthetic stand-in, written as the Zindi archive unpacks.

The generative model itself is ``landslide_dvc.synthetic.stand_in``; this stage publishes its
output folder whole (atomically), so DVC never sees half a dataset.
"""

from __future__ import annotations

from pathlib import Path

from landslide_dvc.core.io import atomic_path
from landslide_dvc.synthetic.stand_in import SynthesizeParams, write_dataset


def run_synthesize(params: SynthesizeParams, out_dir: Path) -> None:
    """Write the stand-in (Train.csv, Test.csv, SampleSubmission.csv, test_labels.csv, .npy folders) to ``out_dir``."""
    with atomic_path(out_dir, directory=True) as tmp:
        write_dataset(tmp, params)
