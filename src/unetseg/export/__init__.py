"""Export: ONNX (fp32, int8) and TorchScript files with the graphs the engine builds (``exporter``).
Loaded lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

from unetseg.core.lazy import lazy

__all__ = ["export"]

if TYPE_CHECKING:
    from unetseg.export.exporter import export


__getattr__ = lazy(__name__, {"export": "exporter"})
