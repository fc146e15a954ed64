"""Copies of a recording with its given calls pasted into its own gaps (``audio dataset --paste N``): five
boxes become many positives, each at another time, with another gain, over other background.

A call is cut from the recording (its box's time span, with 2 ms fades so no click is added), and added at a
random time inside a gap between the annotated events that holds it with a margin; its box moves with it.
Nothing is pasted over another event or outside the annotated part (``span_seconds``).
"""

from __future__ import annotations

import numpy as np

from unetseg.audio.annotations import Event

FADE = 0.002  # seconds of fade at each end of a pasted call
GAIN_DB = (-6.0, 6.0)  # the range of each pasted call's gain
MARGIN = 0.05  # seconds kept free around every event


def _gaps(events: list[Event], span_seconds: float) -> list[tuple[float, float]]:
    """Free stretches of ``[0, span_seconds)`` between the events, each shrunk by ``MARGIN`` at both ends."""
    gaps, start = [], 0.0
    for e in sorted(events, key=lambda e: e.begin):
        if e.begin - MARGIN > start + MARGIN:
            gaps.append((start + MARGIN, e.begin - MARGIN))
        start = max(start, e.end)
    if span_seconds - MARGIN > start + MARGIN:
        gaps.append((start + MARGIN, span_seconds - MARGIN))
    return gaps


def paste_calls(y: np.ndarray, sr: int, events: list[Event], count: int, rng: np.random.Generator,
                span_seconds: float | None = None) -> tuple[np.ndarray, list[Event]]:
    """A copy of ``y`` with up to ``count`` of ``events`` pasted into its gaps, and its events: the given ones
    and the pasted ones (fewer than ``count`` when the gaps fill up)."""
    out = y.astype(np.float32, copy=True)
    span = len(y) / sr if span_seconds is None else min(span_seconds, len(y) / sr)
    calls = [e for e in events if e.end > e.begin and e.end <= span]
    placed = list(events)
    if not calls:
        return out, placed
    fade = max(1, int(FADE * sr))
    for _ in range(count):
        call = calls[int(rng.integers(len(calls)))]
        length = call.end - call.begin
        fits = [(a, b) for a, b in _gaps(placed, span) if b - a >= length]
        if not fits:
            break
        a, b = fits[int(rng.integers(len(fits)))]
        begin = float(rng.uniform(a, b - length))
        src = y[int(round(call.begin * sr)):int(round(call.begin * sr)) + int(round(length * sr))].astype(np.float32)
        ramp = np.ones(len(src), np.float32)
        k = min(fade, len(src) // 2)
        if k:
            ramp[:k] = np.linspace(0, 1, k, dtype=np.float32)
            ramp[-k:] = np.linspace(1, 0, k, dtype=np.float32)
        gain = np.float32(10 ** (rng.uniform(*GAIN_DB) / 20))
        start = int(round(begin * sr))
        n = min(len(src), len(out) - start)
        out[start:start + n] += gain * ramp[:n] * src[:n]
        placed.append(Event(round(begin, 6), round(begin + n / sr, 6), call.low, call.high, call.label, call.score))
    return out, placed
