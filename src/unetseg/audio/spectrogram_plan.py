"""A spectrogram that fits the animals (``audio dataset --preset auto``): from the recordings and their boxes,
the sample rate, hop, FFT length and band, each printed with its reason and recorded beside the dataset
(``spectrogram_plan.json``), as the training plan does for images.

- rate: 22.05 kHz while every box stays below its top; each file's own rate when a box reaches above it
  (bats at 384 kHz keep 384 kHz instead of an error);
- hop: the largest power of two that gives the median call at least ``CALL_COLUMNS`` columns;
- n_fft: the smallest power of two that gives the narrowest band at least ``BAND_ROWS`` rows (at least the
  hop, at most ``MAX_OVERLAP`` hops: time resolution is not traded away entirely);
- band: the boxes' span of frequencies with a margin, so rows are not spent on empty bands.

Any setting given as a flag is kept, with "set by you". With fewer than ``FEW_BOXES`` boxes and no setting
given, the built-in call prior's spectrogram is chosen instead (``train`` then starts from the prior).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetseg.audio.annotations import Event
from unetseg.audio.spectrogram import SpectrogramConfig

DEFAULT_RATE = 22050
CALL_COLUMNS = 8
BAND_ROWS = 3
MAX_OVERLAP = 8  # n_fft at most this many hops
MARGIN = 0.2  # of the band's edges
FEW_BOXES = 50  # fewer: the call prior's spectrogram (five shots in a few recordings)


@dataclass(frozen=True)
class AutoSpectrogram:
    """``--preset auto``: the settings to choose from the data, with those given as flags (``fixed``)."""

    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class SpectrogramChoice:
    key: str
    value: Any
    reason: str


def _pow2_below(x: float, low: int, high: int) -> int:
    return int(min(high, max(low, 2 ** math.floor(math.log2(max(x, 1))))))


def _pow2_above(x: float, low: int, high: int) -> int:
    return int(min(high, max(low, 2 ** math.ceil(math.log2(max(x, 1))))))


def _prior_choice(boxes: list[Event], auto: AutoSpectrogram
                  ) -> tuple[SpectrogramConfig, list[SpectrogramChoice]] | None:
    """Few boxes (each with its band) and no setting given: the built-in call prior's spectrogram, so that
    training starts from the prior (``train`` picks it for a dataset of boxes on its spectrogram; time-only
    labels train from scratch, so they get the fitted spectrogram)."""
    from unetseg.audio.settings import PRIOR_FILE
    from unetseg.audio.spectrogram import PRESETS

    banded = all(e.low is not None and e.high is not None for e in boxes)
    if not boxes or len(boxes) >= FEW_BOXES or not banded or auto.fixed or not PRIOR_FILE.is_file():
        return None
    cfg = PRESETS["prior"]
    why = (f"{len(boxes)} boxes (fewer than {FEW_BOXES}): the built-in call prior's, so training starts from the "
           "prior")
    return cfg, [SpectrogramChoice("sample_rate", None, f"{why}: each file's own rate"),
                 SpectrogramChoice("hop_length", cfg.hop_length, why), SpectrogramChoice("n_fft", cfg.n_fft, why),
                 SpectrogramChoice("fmin", cfg.fmin, why), SpectrogramChoice("fmax", cfg.fmax, why)]


def plan_spectrogram(events: dict[Path, list[Event]], rates: dict[Path, int],
                     auto: AutoSpectrogram) -> tuple[SpectrogramConfig, list[SpectrogramChoice]]:
    """The settings for recordings at ``rates`` (Hz) with ``events``, and why each was chosen."""
    boxes = [e for evs in events.values() for e in evs]
    prior = _prior_choice(boxes, auto)
    if prior:
        return prior
    highs = [e.high for e in boxes if e.high is not None]
    lows = [e.low for e in boxes if e.low is not None]
    bands = [e.high - e.low for e in boxes if e.high is not None and e.low is not None and e.high > e.low]
    fixed, choices = auto.fixed, []

    def choose(key: str, value: Any, reason: str) -> Any:
        if key in fixed:
            choices.append(SpectrogramChoice(key, fixed[key], "set by you"))
            return fixed[key]
        choices.append(SpectrogramChoice(key, value, reason))
        return value

    top = DEFAULT_RATE / 2
    if highs and max(highs) > top:
        rate = choose("sample_rate", None, f"boxes reach {max(highs) / 1000:.1f} kHz, above {top / 1000:.2f} kHz "
                      "(the top at 22.05 kHz): each file's own rate")
    else:
        rate = choose("sample_rate", DEFAULT_RATE, "every box stays below 11.03 kHz, the top at 22.05 kHz"
                      if highs else "no box has a band: 22.05 kHz")
    hz = rate or min(rates.values())  # the coarsest grid of the files
    durations = [e.end - e.begin for e in boxes if e.end > e.begin]
    if durations:
        median = statistics.median(durations)
        hop = _pow2_below(median * hz / CALL_COLUMNS, 8, 4096)
        hop = choose("hop_length", hop, f"the median call ({median * 1000:.1f} ms) spans {median * hz / hop:.0f} "
                     f"columns (at least {CALL_COLUMNS})")
    else:
        hop = choose("hop_length", _pow2_below(128 * hz / DEFAULT_RATE, 8, 4096), "no boxes: 5.8 ms per column")
    if bands:
        narrow = min(bands)
        want = _pow2_above(BAND_ROWS * hz / narrow, 16, 65536)
        n_fft = min(max(want, _pow2_above(hop, 16, 65536)), MAX_OVERLAP * hop, 65536)
        rows = narrow / (hz / n_fft)
        if n_fft == want:
            why = f"the narrowest band ({narrow:.0f} Hz) spans {rows:.1f} rows (at least {BAND_ROWS})"
        elif n_fft < want:
            why = f"the narrowest band ({narrow:.0f} Hz) spans {rows:.1f} rows; n_fft stays within {MAX_OVERLAP} hops"
        else:
            why = f"at least the hop ({hop}); the narrowest band ({narrow:.0f} Hz) spans {rows:.1f} rows"
    else:
        n_fft, why = max(4 * hop, 16), "no bands: four hops"
    n_fft = choose("n_fft", n_fft, why)
    if lows and highs:
        low = math.floor(min(lows) * (1 - MARGIN) / 100) * 100
        high = min(math.ceil(max(highs) * (1 + MARGIN) / 100) * 100, hz / 2)
        fmin = choose("fmin", float(max(low, 0)), f"the boxes lie in {min(lows) / 1000:.1f}-{max(highs) / 1000:.1f} "
                      f"kHz: the band with a {MARGIN:.0%} margin")
        fmax = choose("fmax", float(high), "the same band's top" + (" (the Nyquist frequency)" if high == hz / 2
                                                                   else ""))
    else:
        fmin = choose("fmin", 0.0, "no bands: from 0 Hz")
        fmax = choose("fmax", None, "no bands: to the Nyquist frequency")
    rest = {k: v for k, v in fixed.items() if k not in ("sample_rate", "hop_length", "n_fft", "fmin", "fmax")}
    cfg = SpectrogramConfig(**{**rest, "sample_rate": rate, "hop_length": hop, "n_fft": n_fft,
                               "fmin": fmin, "fmax": fmax})
    return cfg, choices
