"""What an inference run may be told: typed records whose fields are also the command-line flags.

Light to import (no torch): the command line builds its flags from them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from unetseg.core.config import check_device, check_fields, check_threads, option

BACKENDS = ("auto", "torch", "torch-bf16", "onnxruntime", "onnxruntime-int8")
BLENDS = ("gaussian", "linear")


@dataclass(frozen=True)
class InferenceOptions:
    """Device, backend and batching; tiles, blending and test-time augmentation."""

    device: str = option("auto", "cpu, cuda, cuda:1 or auto", check=check_device)
    backend: str = option("auto", "auto (the fastest backend here whose masks agree with fp32; probed once per "
                          "machine and model), torch (eager, channels_last, fp32), torch-bf16 (bf16 autocast), "
                          "onnxruntime (fp32), onnxruntime-int8 (static int8 quantization)", BACKENDS)
    threads: int | None = option(None, "CPU threads for inference (at most the machine's cores)", default_text="all",
                                 ge=1, le=4096, check=check_threads)
    batch_size: int = option(4, "images or spectrogram windows per forward pass", ge=1, le=4096)
    workers: int = option(0, "image reading processes", ge=0, le=64)
    tile: int | None = option(None, "sliding-window tiles of PX x PX for larger (native-size) inputs", metavar="PX",
                              ge=16, le=65536)
    tile_overlap: float = option(0.25, "share of a tile its neighbours overlap", ge=0.0, lt=1.0)
    blend: str = option("gaussian", "weighting of overlapping tiles", BLENDS)
    tta: bool = option(False, "average predictions over horizontal and vertical flips")
    max_memory: float | None = option(None, "memory budget of one forward pass in GB; a larger native-size image "
                                      "is predicted in tiles that fit", metavar="GB", gt=0.0,
                                      default_text="half the machine's memory")
    calibration: str | None = option(None, "images for int8 calibration", metavar="DIR",
                                     default_text="the training split recorded in the model's run")

    def __post_init__(self) -> None:
        check_fields(self)  # choices, bounds and finiteness of every field, from their metadata

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
