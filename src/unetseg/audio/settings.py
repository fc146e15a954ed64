"""The settings of the audio stage: how recordings are cut into model windows (``DetectOptions``) and how
mask regions become events (``EventOptions``). Each field is a flag of ``unetseg audio detect``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from unetseg.core.config import check_fields, option
from unetseg.core.errors import UnetsegError
from unetseg.instances.centres import PEAK_THRESHOLD

MAX_FFT, MAX_MELS, MAX_RATE = 65536, 1024, 384_000  # samples; mel bands; Hz (spectrogram settings and flags)
BUILTIN = "builtin"  # the name of the built-in call prior wherever a model file is asked for (--model, --init)
PRIOR_FILE = Path(__file__).resolve().parent / "prior" / "calls.safetensors"  # rebuilt by 'make prior'


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
    channel: int | None = option(None, "channel to read", metavar="N", default_text="mix to mono", ge=0, le=1023)

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
    peak_threshold: float = option(PEAK_THRESHOLD, "models with an instance head: the lowest centre-heatmap peak that "
                                   "counts as a call", metavar="P", ge=0.0, le=1.0)
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


# Every connected region as it is: nothing dropped, nothing joined (the boxes drawn in a mask).
RAW_REGIONS = EventOptions(granularity="syllable", min_duration=0.0, merge_gap=0.0, freq_tolerance=0.0,
                           simultaneous=0.0, min_bandwidth=0.0, min_pixels=1, click_seconds=0.0, click_band=1.0)
