"""How raw images become network input: the one record of it, stored in model files and run folders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .transforms import Placement, fit_image, plan_placement


@dataclass(frozen=True)
class InputSpec:
    """Channels, size and resize mode, stride divisor and normalisation that training used."""

    channels: int
    size: tuple[int, int] | None
    mode: str
    divisor: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, Placement]:
        placement = plan_placement(image.shape[:2], self.size, self.mode, self.divisor)
        return fit_image(image, placement), placement

    def to_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "size": list(self.size) if self.size else None, "mode": self.mode,
                "divisor": self.divisor, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        size = d.get("size")
        return cls(int(d["channels"]), (int(size[0]), int(size[1])) if size else None, str(d["mode"]),
                   int(d["divisor"]), tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))
