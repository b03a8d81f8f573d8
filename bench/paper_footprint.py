"""Memory and time a GPU user of the paper preset must plan for, measured on this machine.

    python bench/paper_footprint.py [--batch 2] [--steps 3] [--gpu-batch 36]
    python bench/paper_footprint.py --fig5 [--steps 2]

Default: the paper preset's model (presets/paper.yaml over params.yaml: tf_efficientnetv2_l,
12 channels, 256 px) on CPU at ``--batch`` images:

- parameters: counted;
- activation memory: the bytes of every tensor autograd saves for backward during one fp32
  forward (``torch.autograd.graph.saved_tensors_hooks``; each storage once, parameters excluded);
- seconds per image of forward + backward: the median of ``--steps`` timed steps after a warm-up.

The projected peak GPU memory at ``--gpu-batch`` images with bf16 autocast is computed from the two
measured quantities:

    weights fp32 (4 B/param) + gradients fp32 (4 B) + Adam's two moments fp32 (8 B)
  + the bf16 weight copies autocast keeps during the forward (2 B/param)
  + activations per image (measured in fp32) x gpu_batch x 2/4 (bf16 halves each saved value)

It leaves out the CUDA context and cuDNN workspaces (add about 1 GB) and allocator fragmentation.

``--fig5``: per Fig. 5 backbone (experiments/fig5.yaml rows over the paper preset), parameters,
embedding width and seconds per real training step (landslide_dvc.core.training.TrainStep, Adam) at ``--batch``.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from pathlib import Path

import torch

from landslide_dvc.core.augment import AugmentParams, BatchAugment
from landslide_dvc.core.bands import RAW_BANDS
from landslide_dvc.core.model import ModelParams, create_model, resize_input
from landslide_dvc.core.params import load_params, parse_section
from landslide_dvc.core.training import TrainStep
from landslide_dvc.experiments import load_preset, load_table

GiB = 1024**3
PAPER_IMAGES_PER_EPOCH = 7147 + 6275  # the Zindi training patches + SMOTE's 5 per landslide (1,255 x 5)


def model_sections(params_path: Path, row_overrides: dict | None = None) -> tuple[ModelParams, AugmentParams]:
    """model and augment sections: params.yaml, then the paper preset, then a table row's overrides."""
    params = load_params(params_path)
    for key, value in {**load_preset("paper"), **(row_overrides or {})}.items():
        section, leaf = key.split(".", 1)
        params[section][leaf] = value
    model = parse_section({**params["model"], "pretrained": False, "checkpoint": None}, ModelParams, "model")
    return model, parse_section(params["augment"], AugmentParams, "augment")


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for backward over one forward (each storage once, parameters excluded)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(x).float().logsumexp(dim=1).sum()
    loss.backward()
    model.zero_grad(set_to_none=True)
    return sum(storages.values())


def seconds_per_step(step, steps: int) -> float:
    step()  # warm-up: allocations, kernels chosen
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def footprint(args: argparse.Namespace) -> None:
    model_params, _ = model_sections(args.params)
    torch.manual_seed(0)
    model = create_model(model_params, in_chans=12).train()
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randn(args.batch, 12, model_params.dim, model_params.dim)

    activations = saved_activation_bytes(model, x)

    def forward_backward() -> None:
        model(x).float().logsumexp(dim=1).sum().backward()
        model.zero_grad(set_to_none=True)

    step_s = seconds_per_step(forward_backward, args.steps)
    per_image_act = activations / args.batch
    static = n_params * (4 + 4 + 8 + 2)
    projected = static + per_image_act * args.gpu_batch * 2 / 4
    per_image_s = step_s / args.batch
    print(f"model: {model_params.backbone}, 12 channels, {model_params.dim} px, batch {args.batch} (CPU, fp32)")
    print(f"parameters: {n_params:,} ({n_params * 4 / GiB:.2f} GiB in fp32)")
    print(
        f"activations saved for backward: {activations / GiB:.3f} GiB at batch {args.batch} "
        f"({per_image_act / 2**20:.0f} MiB per image)"
    )
    print(f"forward+backward: {step_s:.2f} s per step, {per_image_s:.2f} s per image")
    print(
        f"projected peak GPU memory at batch {args.gpu_batch}, bf16 autocast + fp32 Adam: "
        f"{static / GiB:.2f} GiB weights/grads/Adam/bf16 copies + "
        f"{per_image_act * args.gpu_batch / 2 / GiB:.2f} GiB activations = {projected / GiB:.1f} GiB "
        "(+ ~1 GiB CUDA context)"
    )
    print(
        f"one epoch of the paper ({PAPER_IMAGES_PER_EPOCH:,} images) at this machine's speed: "
        f"{PAPER_IMAGES_PER_EPOCH * per_image_s / 3600:.1f} h (forward+backward only: a lower bound)"
    )


def fig5(args: argparse.Namespace) -> None:
    channels = list(RAW_BANDS)
    print(f"| row | backbone | dim | parameters | embedding width | s per training step (batch {args.batch}) |")
    print("|---|---|---|---|---|---|")
    for row in load_table("fig5").rows:
        model_params, augment_params = model_sections(args.params, row.overrides)
        torch.manual_seed(0)
        model = create_model(model_params, in_chans=len(channels)).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
        step = TrainStep(
            model, optimizer, BatchAugment(augment_params, channels), model_params.dim, torch.device("cpu")
        )
        images, labels = torch.randn(args.batch, len(channels), 64, 64), torch.arange(args.batch) % 2
        step_s = seconds_per_step(functools.partial(step, images, labels), args.steps)
        with torch.no_grad():
            model.eval()
            width = model.forward_head(model.forward_features(resize_input(images, model_params.dim)), pre_logits=True)
        n_params = sum(p.numel() for p in model.parameters())
        print(
            f"| {row.name} | {model_params.backbone} | {model_params.dim} | {n_params / 1e6:.1f} M | "
            f"{width.shape[1]} | {step_s:.2f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--gpu-batch", type=int, default=36)
    parser.add_argument("--fig5", action="store_true", help="per-backbone table for experiments/fig5.yaml")
    args = parser.parse_args()
    (fig5 if args.fig5 else footprint)(args)


if __name__ == "__main__":
    main()
