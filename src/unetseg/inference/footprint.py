"""How much memory an inference forward pass takes, against the budget, and the tile that fits.

The per-pixel bytes of the layer outputs (``models.memory.bytes_per_pixel``) times the share of them alive
at the peak, per backend. Torch's share was measured (peak RSS growth over the hooks' sum) at 0.30 for
classic U-Nets of width 16 and 32 on 1024 and 2048 px inputs (0.16-0.19 for the built-in prior); ONNX
Runtime's arena keeps more alive: 0.34 for the prior at 1024 and 2048 px, against 0.16-0.19 under torch in
the same run, and 0.49 for the classic U-Net of width 32 at a batch of 2 x 1024 px (``benchmarks/infer.py``'s
budget check: the whole predict command's growth; its int8 graph 0.31). ``LIVE_SHARE`` keeps a margin above
each.
"""

from __future__ import annotations

from torch import nn

from unetseg.core.budget import memory_budget
from unetseg.models.estimates import bytes_per_pixel

LIVE_SHARE = {"torch": 0.4, "torch-bf16": 0.4, "onnxruntime": 0.6, "onnxruntime-int8": 0.5}
MAX_AUTO_TILE = 1024


class MemoryGuard:
    """Estimates a forward pass of ``model`` and picks a tile that fits the budget."""

    def __init__(self, model: nn.Module, channels: int, divisor: int, max_memory_gb: float | None = None,
                 backend: str = "torch") -> None:
        self.outputs = bytes_per_pixel(model, channels, divisor)
        self.per_pixel = 0.0
        self.use(backend)  # "auto": torch's, until the backend is chosen
        self.weights = sum(p.numel() * p.element_size() for p in model.parameters())
        self.budget = memory_budget(max_memory_gb)
        self.divisor = divisor

    def use(self, backend: str) -> None:
        """Estimate for ``backend`` (its share of the layer outputs alive at the peak)."""
        self.per_pixel = self.outputs * LIVE_SHARE.get(backend, LIVE_SHARE["torch"])

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
