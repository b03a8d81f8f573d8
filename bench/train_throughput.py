"""Training-step throughput against a bare forward+backward of the same model, in one run.

    python bench/train_throughput.py [--params params.yaml] [--preset paper] [--rounds 5] [--steps 15] [--device auto]

The training step is the real one (landslide_dvc.core.training.TrainStep: batch gathered from an in-memory
dataset, colour/geometric augmentation, MixUp/CutMix, resize to model.dim, soft-label loss, fused
Adam). The bare step is forward + backward of an identical model on random tensors of the shape
the network sees (batch, channels, dim, dim), with no optimiser. Rounds alternate between the two
so machine noise hits both alike; the medians are compared. Last line: `ratio: X` (goal >= 0.85).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

# First: the pipeline's CPU code paths (docs/reliability.md) are what is measured.
import landslide_dvc  # noqa: F401

# isort: split
import torch

from landslide_dvc.core.augment import AugmentParams, BatchAugment
from landslide_dvc.core.bands import RAW_BANDS
from landslide_dvc.core.channels import channel_names
from landslide_dvc.core.devices import autocast, select_device, to_memory_format
from landslide_dvc.core.model import ModelParams, create_model
from landslide_dvc.core.params import load_params, parse_section
from landslide_dvc.core.runtime import keep_freed_memory
from landslide_dvc.core.training import TrainParams, TrainStep


def timed(fn, steps: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--preset", help="apply presets/<name>.yaml on top (e.g. paper, on a GPU)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()

    params = load_params(args.params)
    if args.preset:
        from landslide_dvc.experiments import load_preset

        for key, value in load_preset(args.preset).items():
            section, leaf = key.split(".", 1)
            params[section][leaf] = value
    model_params = parse_section(params["model"], ModelParams, "model")
    model_params = ModelParams(**{**model_params.__dict__, "pretrained": False, "checkpoint": None})
    augment = parse_section(params["augment"], AugmentParams, "augment")
    train = parse_section(params["train"], TrainParams, "train")
    channels = channel_names(params["normalize"]["channels"]) if "normalize" in params else list(RAW_BANDS)
    device = select_device(args.device, "--device")
    keep_freed_memory()  # as train_fold does
    batch, dim = train.batch_size, model_params.dim
    torch.manual_seed(0)

    model = create_model(model_params, len(channels)).to(device)
    bare_model = copy.deepcopy(model)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
        bare_model = bare_model.to(memory_format=torch.channels_last)
    model.train()
    bare_model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=train.lr, fused=True)
    step = TrainStep(model, optimizer, BatchAugment(augment, channels), dim, device)

    dataset = torch.randn(max(16 * batch, 512), len(channels), 64, 64)
    labels = torch.randint(0, 2, (len(dataset),))
    if device.type == "cuda":
        dataset, labels = dataset.to(device), labels.to(device)
    generator = torch.Generator().manual_seed(0)

    def train_step() -> None:
        index = torch.randint(len(dataset), (batch,), generator=generator).to(dataset.device)
        step(dataset[index], labels[index])

    x = to_memory_format(torch.randn(batch, len(channels), dim, dim, device=device), device)
    y = torch.randint(0, 2, (batch,), device=device)

    def bare_step() -> None:
        with autocast(device):
            logits = bare_model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        bare_model.zero_grad(set_to_none=True)
        loss.backward()

    for _ in range(3):  # warm-up (allocator, oneDNN/cuDNN kernel selection)
        train_step()
        bare_step()
    train_rates, bare_rates = [], []
    for _ in range(args.rounds):
        train_rates.append(args.steps * batch / timed(train_step, args.steps, device))
        bare_rates.append(args.steps * batch / timed(bare_step, args.steps, device))
    train_rate, bare_rate = statistics.median(train_rates), statistics.median(bare_rates)
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}")
    print(f"model: {model_params.backbone}, {len(channels)} channels, input {dim}x{dim}, batch {batch}")
    print(f"augmentation: color={augment.color} geometric={augment.geometric} mixup={augment.mixup} cutmix={augment.cutmix}")
    print(f"training step (augment + mix + resize + loss + Adam): {train_rate:.1f} images/s (rounds: "
          + ", ".join(f"{r:.0f}" for r in train_rates) + ")")
    print(f"bare forward+backward (same model, random tensors): {bare_rate:.1f} images/s (rounds: "
          + ", ".join(f"{r:.0f}" for r in bare_rates) + ")")
    print(f"ratio: {train_rate / bare_rate:.3f}")


if __name__ == "__main__":
    sys.exit(main())
