"""The machine probe of the plan: training steps (forward, loss, backward, AdamW) of candidate models and
precisions, timed in turns on random data at the planned batch and input, cached per machine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from unetseg.core.machine import cached_probe, machine_key, rates_in_turns


@dataclass(frozen=True)
class StepShape:
    """The training step a probe times: input channels, outputs, batch, height and width, loss."""

    channels: int
    outputs: int
    batch: int
    height: int
    width: int
    loss: str


def machine() -> dict[str, Any]:
    """The machine as the probes see it (CPU, vector units, AMX, threads, libraries) and whether CUDA is here."""
    return {**machine_key(torch.get_num_threads()), "cuda": torch.cuda.is_available()}


def training_rates(configs: dict[str, tuple[dict[str, Any], bool]], shape: StepShape, machine: dict[str, Any],
                   max_memory: float | None = None) -> dict[str, float]:
    """Training images/s of each (model fields, bf16) config for steps of ``shape``: forward, loss, backward
    and an AdamW step on random data, timed in turns (cached per machine and config). Each model's memory is
    checked before anything big is allocated."""
    from unetseg.data.transforms import check_size
    from unetseg.models import create_model
    from unetseg.models.estimates import check_training_memory
    from unetseg.models.factory import output_stride

    s = shape

    def measure() -> dict[str, Any]:
        models = {}
        for name, (fields, _) in configs.items():
            model = create_model(fields, s.channels, s.outputs)
            stride = output_stride(fields)
            if s.height % stride or s.width % stride:
                check_size([s.height, s.width], "resize", stride)
            check_training_memory(model, s.channels, stride, s.batch, s.height, s.width, max_memory)
            models[name] = model.to(memory_format=torch.channels_last)
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(s.batch, s.channels, s.height, s.width, generator=generator
                        ).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, max(s.outputs, 2), (s.batch, s.height, s.width), generator=generator).to(torch.uint8)
        steps = {name: _train_step(models[name], y, bf16, s.loss, s.outputs)
                 for name, (_, bf16) in configs.items()}
        rates = rates_in_turns(steps, x, warmup=1, rounds=2)
        return {"images_per_s": {k: round(v, 3) for k, v in rates.items()}, "batch": s.batch,
                "input": [s.channels, s.height, s.width]}

    key = [machine, {k: [v[0], v[1]] for k, v in configs.items()}, s.channels, s.outputs, s.batch, s.height, s.width,
           s.loss]
    result, _ = cached_probe("training", key, measure, valid=lambda r: set(r["images_per_s"]) == set(configs))
    return {k: float(v) for k, v in result["images_per_s"].items()}


def _train_step(model: torch.nn.Module, y: torch.Tensor, bf16: bool, loss: str, outputs: int) -> Any:
    from unetseg.training.losses import SegmentationLoss

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = SegmentationLoss(loss, outputs == 1)

    def step(x: torch.Tensor) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            value = loss_fn(model(x)[:, :outputs], y)  # the class maps (an instance head's channels follow)
        opt.zero_grad(set_to_none=True)
        value.backward()
        opt.step()

    return step
