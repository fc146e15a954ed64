"""How raw images become network input: the one record of it, stored in model files and run folders.

A plain record (no readers): the model file, the engine and the data readers all use it;
``data.transforms.prepare_input`` applies it to an image."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RESIZE_MODES = ("resize", "letterbox", "pad")


@dataclass(frozen=True)
class InputSpec:
    """Channels, size and resize mode, stride divisor and normalisation that training used."""

    channels: int
    size: tuple[int, int] | None
    mode: str
    divisor: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "size": list(self.size) if self.size else None, "mode": self.mode,
                "divisor": self.divisor, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        size = d.get("size")
        return cls(int(d["channels"]), (int(size[0]), int(size[1])) if size else None, str(d["mode"]),
                   int(d["divisor"]), tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))
