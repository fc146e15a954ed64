"""The classic U-Net (Ronneberger et al., 2015), with optional batch norm, dropout and attention gates
(Oktay et al., 2018, "Attention U-Net").

    encoder: [conv-conv] -> pool -> [conv-conv] -> ... -> bottleneck
    decoder: up-conv, (gate the skip), concatenate the skip, [conv-conv]  ... -> 1x1 conv to classes

Width doubles at each of ``depth`` down-sampling steps, so inputs must divide by ``2 ** depth``.
"""

from __future__ import annotations

import torch
from torch import nn


class DoubleConv(nn.Sequential):
    """(3x3 conv -> [batch norm] -> ReLU) twice."""

    def __init__(self, in_ch: int, out_ch: int, batch_norm: bool = True, dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        for i in range(2):
            layers.append(nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout2d(dropout))
        super().__init__(*layers)


class AttentionGate(nn.Module):
    """Weights skip features by a map computed from them and the coarser decoder signal."""

    def __init__(self, skip_ch: int, gate_ch: int, inner_ch: int) -> None:
        super().__init__()
        self.skip = nn.Conv2d(skip_ch, inner_ch, 1)
        self.gate = nn.Conv2d(gate_ch, inner_ch, 1)
        self.psi = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(inner_ch, 1, 1), nn.Sigmoid())

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return skip * self.psi(self.skip(skip) + self.gate(gate))


class Up(nn.Module):
    """2x transposed-conv up-sampling, optional attention on the skip, concatenation, double conv."""

    def __init__(self, in_ch: int, out_ch: int, batch_norm: bool, dropout: float, attention: bool) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.gate = AttentionGate(out_ch, out_ch, max(1, out_ch // 2)) if attention else None
        self.conv = DoubleConv(2 * out_ch, out_ch, batch_norm, dropout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if self.gate is not None:
            skip = self.gate(skip, x)
        return self.conv(torch.cat([skip, x], dim=1))


class UNet(nn.Module):
    """Classic U-Net: ``depth`` down/up steps, ``base_width`` channels at the top level."""

    def __init__(self, in_channels: int = 3, classes: int = 1, depth: int = 4, base_width: int = 64,
                 batch_norm: bool = True, dropout: float = 0.0, attention: bool = False) -> None:
        super().__init__()
        widths = [base_width * 2**i for i in range(depth + 1)]
        self.inc = DoubleConv(in_channels, widths[0], batch_norm)
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv(widths[i], widths[i + 1], batch_norm,
                                                      dropout if i == depth - 1 else 0.0))
            for i in range(depth)
        )
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], batch_norm, dropout if i > 0 else 0.0, attention)
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], classes, 1)
        self.divisor = 2**depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)
