"""How much memory a model's forward pass (and a training step) takes, estimated before it runs.

The estimate: the bytes of every layer's output per input pixel, measured once with forward hooks on a
small input (all of a U-Net's layers scale with the pixels), times the share of them alive at the peak.
"""

from __future__ import annotations

import torch
from torch import nn

from unetseg.core.budget import gib, memory_budget
from unetseg.core.errors import UnetsegError

# A training step keeps every layer output for the backward pass: peak RSS growth was 1.04-1.16x the hooks'
# sum (classic w8-w32, 256-1024 px, AdamW).
TRAIN_SHARE = 1.3


@torch.no_grad()
def bytes_per_pixel(model: nn.Module, channels: int, divisor: int) -> float:
    """Bytes of all layer outputs per input pixel (fp32), measured on one small input."""
    side = divisor * 2
    total = 0

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        nonlocal total
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                total += t.numel() * 4

    handles = [m.register_forward_hook(hook) for m in model.modules() if not any(True for _ in m.children())]
    try:
        was_training = model.training
        model.eval()
        model(torch.zeros(1, channels, side, side))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total / (side * side)


def check_training_memory(model: nn.Module, channels: int, divisor: int, batch: int, height: int, width: int,
                          max_memory_gb: float | None = None) -> None:
    """Refuse, before any work, a training step whose estimated memory is over the budget."""
    per_pixel = bytes_per_pixel(model, channels, divisor) * TRAIN_SHARE
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) * 4  # weights, grads, two moments
    need = per_pixel * batch * height * width + weights
    budget = memory_budget(max_memory_gb)
    if need > budget:
        raise UnetsegError(f"a training batch of {batch} at {width}x{height} needs about {gib(need)}, over the memory "
                           f"budget of {gib(budget)}; lower --batch-size, --size or --crop, or raise --max-memory")
