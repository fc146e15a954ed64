"""What an inference run may be told: typed records whose fields are also the command-line flags.

Light to import (no torch): the command line builds its flags from them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..config import check_fields, check_threads, option
from ..errors import UnetsegError

BACKENDS = ("auto", "torch", "torch-bf16", "onnxruntime", "onnxruntime-int8")
BLENDS = ("gaussian", "linear")


@dataclass(frozen=True)
class InferenceOptions:
    """Device, backend and batching; tiles, blending and test-time augmentation."""

    device: str = option("auto", "cpu, cuda, cuda:1 or auto")
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


@dataclass(frozen=True)
class DetectOptions:
    """How recordings are cut into model windows."""

    window: int | None = option(None, "spectrogram columns per model window (the network is fully "
                                "convolutional: wider windows share fewer columns)", metavar="COLUMNS",
                                default_text="4 x the model's input width", ge=1, le=65536)
    overlap: int | None = option(None, "columns shared by neighbouring windows", metavar="COLUMNS",
                                 default_text="a quarter of the model's input width", ge=0, le=65535)
    block_seconds: float = option(20.0, "seconds of audio read at a time (bounds memory)", metavar="S", gt=0.0,
                                  le=3600.0)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.window is not None and self.overlap is not None and self.overlap >= self.window:
            raise UnetsegError(f"--overlap {self.overlap} must be smaller than --window {self.window}")


# How far pieces of sound are joined into one event: the merge gap (s) and the shortest event kept (s).
GRANULARITY: dict[str, dict[str, float]] = {
    "syllable": {"merge_gap": 0.005, "min_duration": 0.01},
    "call": {"merge_gap": 0.05, "min_duration": 0.03},
    "song": {"merge_gap": 0.5, "min_duration": 0.1},
}

# On the bird-mixture model (benchmarks/events.py) syllable gave the event count nearest a person's boxes on
# the spinetail recording and the best syllable F1 on the finch mixtures; call joins finch syllables.
DEFAULT_GRANULARITY = "syllable"


@dataclass(frozen=True)
class EventOptions:
    """How mask regions become events: specks and clicks dropped, pieces of one call joined, then events
    shorter or narrower than a person would mark dropped."""

    granularity: str | None = option(None, "how far pieces are joined: syllable, call or song (sets --merge-gap "
                                     "and --min-duration unless given)", tuple(GRANULARITY),
                                     default_text=DEFAULT_GRANULARITY)
    min_duration: float | None = option(None, "drop events shorter than this (s)", metavar="S",
                                        default_text="from --granularity", ge=0.0, le=3600.0)
    merge_gap: float | None = option(None, "join regions of a class that overlap in frequency and lie closer "
                                     "in time than this (s)", metavar="S", default_text="from --granularity",
                                     ge=0.0, le=3600.0)
    freq_tolerance: float = option(150.0, "bands closer than this (Hz) count as overlapping when joining",
                                   metavar="HZ", ge=0.0, le=1e6)
    simultaneous: float = option(0.5, "join regions of a class that overlap in time by this share of the longer "
                                 "one, whatever their bands (harmonics of one call; 0: never)", metavar="SHARE",
                                 ge=0.0, le=1.0)
    min_bandwidth: float = option(0.0, "drop events narrower than this (Hz)", metavar="HZ", ge=0.0, le=1e6)
    min_pixels: int = option(8, "drop regions of fewer mask pixels before joining (specks)", metavar="N", ge=0,
                             le=10**9)
    click_seconds: float = option(0.02, "drop regions shorter than this (s) that span more than --click-band "
                                  "of the spectrum (broadband clicks)", metavar="S",
                                  ge=0.0, le=3600.0)
    click_band: float = option(0.5, "share of the spectrum a short region must span to count as a click",
                               metavar="SHARE", ge=0.0, le=1.0)
    max_event_seconds: float = option(60.0, "cut events longer than this (s; bounds memory)", metavar="S", gt=0.0,
                                      le=86400.0)

    def __post_init__(self) -> None:
        check_fields(self)  # choices, bounds and finiteness of every field, from their metadata

    def resolved(self) -> EventOptions:
        """A copy with --merge-gap and --min-duration filled from the granularity."""
        granularity = self.granularity or DEFAULT_GRANULARITY
        preset = GRANULARITY[granularity]
        return dataclasses.replace(
            self, granularity=granularity,
            min_duration=preset["min_duration"] if self.min_duration is None else self.min_duration,
            merge_gap=preset["merge_gap"] if self.merge_gap is None else self.merge_gap)
