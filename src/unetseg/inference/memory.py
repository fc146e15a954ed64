"""How much memory a forward pass takes, estimated before it runs, against a budget.

The estimate: the bytes of every layer's output per input pixel, measured once with forward hooks on a
small input (all of a U-Net's layers scale with the pixels), times the share of them alive at the peak.
That share was measured (peak RSS growth over the hooks' sum) at 0.30 for classic U-Nets of width 16 and
32 on 1024 and 2048 px inputs; ``LIVE_SHARE`` keeps a margin above it.
"""

from __future__ import annotations

import logging
import os
import resource

import torch
from torch import nn

log = logging.getLogger(__name__)

LIVE_SHARE = 0.4
# A training step keeps every layer output for the backward pass: peak RSS growth was 1.04-1.16x the hooks'
# sum (classic w8-w32, 256-1024 px, AdamW).
TRAIN_SHARE = 1.3
BUDGET_SHARE = 0.5  # of the machine's memory (or of the address-space limit), unless --max-memory says
MAX_AUTO_TILE = 1024


def memory_budget(max_memory_gb: float | None = None) -> int:
    """Bytes a forward pass may take: ``max_memory_gb``, else half the machine's memory, and never more than
    half a memory limit the process runs under (``ulimit -v`` or ``-d``)."""
    if max_memory_gb is not None:
        return int(max_memory_gb * 2**30)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    budget = int(total * BUDGET_SHARE)
    for limit in (resource.RLIMIT_AS, resource.RLIMIT_DATA):
        soft, _ = resource.getrlimit(limit)
        if soft != resource.RLIM_INFINITY:
            budget = min(budget, int(soft * BUDGET_SHARE))
    return budget


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


class MemoryGuard:
    """Estimates a forward pass of ``model`` and picks a tile that fits the budget."""

    def __init__(self, model: nn.Module, channels: int, divisor: int, max_memory_gb: float | None = None) -> None:
        self.per_pixel = bytes_per_pixel(model, channels, divisor) * LIVE_SHARE
        self.weights = sum(p.numel() * p.element_size() for p in model.parameters())
        self.budget = memory_budget(max_memory_gb)
        self.divisor = divisor

    def estimate(self, batch: int, height: int, width: int) -> int:
        return int(self.per_pixel * batch * height * width + self.weights)

    def fits(self, batch: int, height: int, width: int) -> bool:
        return self.estimate(batch, height, width) <= self.budget

    def tile(self, batch: int = 1) -> int | None:
        """The largest square tile (a multiple of the stride, at most 1024 px) within the budget; None when
        not even one stride fits."""
        side = MAX_AUTO_TILE // self.divisor * self.divisor
        while side >= self.divisor and not self.fits(batch, side, side):
            side -= self.divisor
        return side if side >= self.divisor else None


def check_training_memory(model: nn.Module, channels: int, divisor: int, batch: int, height: int, width: int,
                          max_memory_gb: float | None = None) -> None:
    """Refuse, before any work, a training step whose estimated memory is over the budget."""
    from ..errors import UnetsegError

    per_pixel = bytes_per_pixel(model, channels, divisor) * TRAIN_SHARE
    weights = sum(p.numel() * p.element_size() for p in model.parameters()) * 4  # weights, grads, two moments
    need = per_pixel * batch * height * width + weights
    budget = memory_budget(max_memory_gb)
    if need > budget:
        raise UnetsegError(f"a training batch of {batch} at {width}x{height} needs about {gib(need)}, over the memory "
                           f"budget of {gib(budget)}; lower --batch-size, --size or --crop, or raise --max-memory")


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GB"
