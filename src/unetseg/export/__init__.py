"""Export: ONNX (fp32, int8) and TorchScript files with the graphs the engine builds (``exporter``).
Loaded lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["export"]

if TYPE_CHECKING:
    from unetseg.export.exporter import export


def __getattr__(name: str) -> Any:
    if name == "export":
        from unetseg.export.exporter import export

        return export
    raise AttributeError(name)
