"""One fold started from SSL4EO-S12-layout ResNet-50 files, with its recorded stem mapping.

    python bench/ssl4eo_fold.py [--s2 FILE] [--s1 FILE] [--epochs 1] [--dim 64] [--device auto] [--out DIR]

Without --s2/--s1 it writes two stand-in files in torchgeo's layout (timm's resnet50 with in_chans
13 and 2, random weights, no classifier): the mapping and its record are the same as with the
real files, only the features are not pretrained. It normalises the pipeline's dataset (data.dir of
params.yaml, by default the synthetic stand-in) with normalize.method: ssl4eo into the output
folder, trains fold 0 without SMOTE images through the `train_fold` stage's code, and prints the
mapping and the files' sha256 as the checkpoint's meta and the metrics record them.
Nothing in the repository is written (the output folder defaults to a temporary one).
On 2 busy CPU cores one epoch at 64 px took 206 s (stand-ins; validation F1 0 after one epoch
of random weights, as expected); on a GPU use --dim 224 and more epochs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import timm
import torch

from landslide_dvc.core.augment import AugmentParams
from landslide_dvc.core.checkpoint import load_checkpoint
from landslide_dvc.core.model import ModelParams
from landslide_dvc.core.params import get_section, load_params
from landslide_dvc.core.training import TrainParams
from landslide_dvc.pipeline.normalize import DataParams, FoldsParams, NormalizeParams, check_data_dir, run_normalize
from landslide_dvc.pipeline.train_fold import run_train_fold


def stand_in(path: Path, in_chans: int, seed: int) -> Path:
    """A state dict in torchgeo's layout for SSL4EO-S12 ResNet-50 weights (random values)."""
    torch.manual_seed(seed)
    torch.save(timm.create_model("resnet50", in_chans=in_chans, num_classes=0).state_dict(), path)
    return path


def empty_smote(path: Path, fold: int, n_channels: int, size: int) -> None:
    """The smote stage's file with no synthetic image for ``fold`` (SMOTE off)."""
    with h5py.File(path, "w") as h5:
        group = h5.create_group(f"fold_{fold}")
        group.create_dataset("images", data=np.empty((0, n_channels, size, size), np.float32))
        for name in ("anchor_id", "neighbor_id"):
            group.create_dataset(name, data=np.array([], dtype=object), dtype=h5py.string_dtype())
        group.create_dataset("lam", data=np.empty(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--s2", type=Path, help="SSL4EO-S12 Sentinel-2 ResNet-50 file (default: a stand-in)")
    parser.add_argument("--s1", type=Path, help="SSL4EO-S12 Sentinel-1 ResNet-50 file (default: a stand-in)")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--dim", type=int, default=64, help="model.dim (the weights were pretrained at 224)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, help="output folder (default: a temporary one)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="ssl4eo_fold_"))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    s2 = args.s2 or stand_in(out / "ssl4eo_s2_stand_in_resnet50.pth", 13, 0)
    s1 = args.s1 or stand_in(out / "ssl4eo_s1_stand_in_resnet50.pth", 2, 1)

    params = load_params()
    data = get_section(params, DataParams, "data")
    folds = get_section(params, FoldsParams, "folds")
    norm = dataclasses.replace(get_section(params, NormalizeParams, "normalize"), method="ssl4eo")
    run_normalize(check_data_dir(data.dir), norm, folds, out / "train.h5", out / "test.h5", out / "answers.csv",
                  optical_scale=data.optical_scale)
    with h5py.File(out / "train.h5") as h5:
        shape = h5["images"].shape
        print("normalize (ssl4eo):", "; ".join(h5.attrs["scaling_sources"]))
    empty_smote(out / "smote.h5", 0, shape[1], shape[-1])

    model = dataclasses.replace(
        get_section(params, ModelParams, "model"), backbone="resnet50", pretrained=True, checkpoint=str(s2),
        checkpoint_bands="s2_l1c_13", checkpoint_s1=str(s1), dim=args.dim,
    )
    train = dataclasses.replace(get_section(params, TrainParams, "train"), epochs=args.epochs, lr=3e-4,
                                device=args.device, eval_every=1)
    result = run_train_fold(
        0, model, get_section(params, AugmentParams, "augment"), train,
        train_path=out / "train.h5", smote_path=out / "smote.h5", out_model=out / "fold_0.pt",
        out_oof=out / "oof_0.h5", out_metrics=out / "metrics_0.json", live_dir=out / "dvclive", resume_dir=None,
    )
    assert result is not None
    meta = load_checkpoint(out / "fold_0.pt")["meta"]
    metrics = json.loads((out / "metrics_0.json").read_text())
    recorded = {k: meta[k] for k in meta if k.startswith("weights_")}
    assert recorded == {k: metrics[k] for k in metrics if k.startswith("weights_")}, "meta and metrics disagree"
    print(json.dumps(recorded, indent=2))
    print(f"fold 0: best validation F1 {result.best_val_f1:.4f} at epoch {result.best_epoch}; "
          f"{time.perf_counter() - start:.0f} s; outputs in {out}")


if __name__ == "__main__":
    main()
