"""Synthetic vocalisations in real backgrounds, with their boxes (``unetseg audio synth``): the material a call
prior learns from beside real recordings, and recordings whose truth is exact for tests.

Each recording holds one to three "species", each a kind of call with its own duration and band, repeated
at random times: tonal whistles (with vibrato), FM sweeps (up or down), harmonic stacks, trills (a run of
short sweeps, one box), clicks (band-limited bursts of 1-5 ms) and pulse trains. Durations run from 1 ms to
2 s and bands from 200 Hz to 150 kHz (below the recording's Nyquist frequency). Calls are mixed into a
background (a soundscape, resampled, or pink noise) at -5 to 20 dB over their own span, beside broadband
transients that are not calls and have no box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetseg.audio.annotations import Event

KINDS = ("whistle", "sweep", "harmonic", "trill", "click", "pulses")
LOWEST, HIGHEST = 200.0, 150_000.0  # Hz
SNR_DB = (-5.0, 20.0)


@dataclass(frozen=True)
class Species:
    """One kind of call: its ``kind``, duration range (s) and band (Hz)."""

    kind: str
    duration: tuple[float, float]
    low: float
    high: float
    label: str


def random_species(rng: np.random.Generator, sample_rate: int, label: str) -> Species:
    """A species whose calls fit below ``sample_rate``'s Nyquist frequency."""
    kind = KINDS[int(rng.integers(len(KINDS)))]
    top = min(HIGHEST, 0.45 * sample_rate)
    centre = float(np.exp(rng.uniform(np.log(LOWEST * 2), np.log(top * 0.8))))
    width = {"whistle": 0.15, "sweep": 0.6, "harmonic": 0.2, "trill": 0.5, "click": 1.0, "pulses": 0.8}[kind]
    low = max(LOWEST, centre * (1 - width * rng.uniform(0.3, 0.6)))
    high = min(top, centre * (1 + width * rng.uniform(0.3, 0.6)))
    if kind in ("click", "pulses"):  # broadband: at least 2 kHz wide, from 1 kHz up
        low = min(max(low, 1000.0), top / 2)
        high = min(top, max(high, low + 2000.0))
        length = (0.001, 0.005) if kind == "click" else (0.02, 0.3)
    else:
        shortest = float(np.exp(rng.uniform(np.log(0.08 if kind == "trill" else 0.003), np.log(0.5))))
        length = (shortest, min(2.0, shortest * rng.uniform(1.2, 3.0)))
    return Species(kind, length, low, high, label)


def _sweep(t: np.ndarray, f0: float, f1: float) -> np.ndarray:
    """A linear chirp from ``f0`` to ``f1`` Hz over ``t`` (s)."""
    span = max(t[-1], 1e-9)
    return np.sin(2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / span * t**2))


def _burst(rng: np.random.Generator, n: int, low: float, high: float, sr: int) -> np.ndarray:
    """Noise of ``n`` samples band-limited to ``[low, high]`` Hz (filtered at a resolution of a few Hz, then cut
    to length)."""
    size = max(n, 1 << 14)
    spectrum = np.fft.rfft(rng.standard_normal(size))
    freqs = np.fft.rfftfreq(size, 1 / sr)
    spectrum[(freqs < low) | (freqs > high)] = 0
    out = np.fft.irfft(spectrum, size)[:n]
    return out / (np.abs(out).max() + 1e-12)


def render_call(s: Species, rng: np.random.Generator, sr: int) -> tuple[np.ndarray, float, float]:
    """One call of ``s``: its samples (peak 1) and its band (low, high Hz), as a person would box it."""
    duration = float(rng.uniform(*s.duration))
    n = max(8, int(duration * sr))
    t = np.arange(n) / sr
    element = duration  # the length of its shortest piece of sound, which sets its spread in frequency
    if s.kind == "whistle":
        f = 0.5 * (s.low + s.high)
        depth = 0.4 * (s.high - s.low)
        y = np.sin(2 * np.pi * f * t + depth / 6.0 * np.sin(2 * np.pi * 6.0 * t))
        low, high = f - depth / 2, f + depth / 2
    elif s.kind == "sweep":
        up = rng.random() < 0.5
        y = _sweep(t, s.low if up else s.high, s.high if up else s.low)
        low, high = s.low, s.high
    elif s.kind == "harmonic":
        f0 = s.low
        count = max(1, min(5, int(s.high / f0)))
        y = sum(np.sin(2 * np.pi * f0 * (k + 1) * t) / (k + 1) for k in range(count))
        low, high = f0 * 0.95, f0 * count * 1.05  # the fundamental to the top harmonic
    elif s.kind == "trill":
        elements = int(rng.integers(4, 12))
        y = np.zeros(n)
        step = n // elements
        element = 0.7 * step / sr
        for k in range(elements):
            part = t[: max(4, int(step * 0.7))]
            y[k * step:k * step + len(part)] += _sweep(part, s.high, s.low)[: n - k * step]
        low, high = s.low, s.high
    else:  # click, pulses
        if s.kind == "click":
            y = _burst(rng, n, s.low, s.high, sr)
        else:
            y = np.zeros(n)
            click = max(8, int(0.002 * sr))
            element = click / sr
            for start in range(0, n - click, max(click * 2, int(rng.uniform(0.008, 0.03) * sr))):
                y[start:start + click] += _burst(rng, click, s.low, s.high, sr)
        low, high = s.low, s.high
    y = y * np.hanning(n) ** 0.5  # soft onset and offset
    # a short sound spreads in frequency (about 1 / its length): the box holds that spread, as one drawn on it
    spread = 1.5 / max(element, 1e-4)
    low, high = max(low - spread, 0.0), min(high + spread, sr / 2)
    return (y / (np.abs(y).max() + 1e-12)).astype(np.float32), float(low), float(high)


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    out = np.fft.irfft(spectrum, n)
    return out / (np.std(out) + 1e-12)


def synth_recording(rng: np.random.Generator, sr: int, seconds: float, background: np.ndarray | None = None,
                    calls: int = 12) -> tuple[np.ndarray, list[Event]]:
    """A recording of ``seconds`` at ``sr`` Hz: ``background`` (repeated or cut to length; pink noise when None)
    with about ``calls`` calls of one to three species and a few unboxed broadband transients; its events."""
    n = int(seconds * sr)
    if background is None or not len(background):
        y = 0.05 * _pink(rng, n)
    else:
        y = np.resize(background, n).astype(np.float64)
        # a floor of pink noise 20 dB down: a background of a lower rate leaves no band in digital silence
        y = 0.05 * y / (np.std(y) + 1e-12) + 0.005 * _pink(rng, n)
    noise_power = float(np.mean(y**2))
    species = [random_species(rng, sr, f"sp{k + 1}") for k in range(int(rng.integers(1, 4)))]
    events: list[Event] = []
    for _ in range(calls):
        s = species[int(rng.integers(len(species)))]
        call, low, high = render_call(s, rng, sr)
        begin = int(rng.integers(0, max(1, n - len(call))))
        if any(begin / sr < e.end + 0.01 and e.begin < (begin + len(call)) / sr + 0.01 for e in events):
            continue  # no two calls overlap: each box holds one call
        snr = rng.uniform(*SNR_DB)
        gain = np.sqrt(noise_power * 10 ** (snr / 10) / (np.mean(call**2) + 1e-12))
        y[begin:begin + len(call)] += gain * call
        events.append(Event(round(begin / sr, 6), round((begin + len(call)) / sr, 6), round(low, 1), round(high, 1),
                            s.label))
    for _ in range(int(rng.integers(1, 4))):  # transients: broadband, very short, not calls
        at, width = int(rng.integers(0, n - 8)), max(4, int(0.0005 * sr))
        y[at:at + width] += rng.uniform(0.3, 1.0) * rng.standard_normal(len(y[at:at + width]))
    peak = np.abs(y).max()
    return (y / peak * 0.9 if peak > 0.9 else y).astype(np.float32), sorted(events, key=lambda e: e.begin)


def write_recordings(output: str | Path, count: int, sample_rate: int, seconds: float,
                     noise: list[Path] | None = None, seed: int = 0) -> list[Path]:
    """``count`` synthetic recordings (``synth-NNN.wav``) with their Raven tables (``synth-NNN.selections.txt``)
    in the new folder ``output``: backgrounds are ``noise`` recordings (resampled, in turn) or pink noise."""
    import soundfile as sf

    from unetseg.audio.annotations import format_raven
    from unetseg.audio.recordings import load_audio
    from unetseg.core.fileio import staged_dir, write_text

    rng = np.random.default_rng(seed)
    backgrounds = [load_audio(f, sample_rate)[0] for f in noise or []]
    with staged_dir(output) as stage:
        for k in range(count):
            background = backgrounds[k % len(backgrounds)] if backgrounds else None
            y, events = synth_recording(rng, sample_rate, seconds, background, calls=max(1, int(seconds * 1.5)))
            sf.write(stage / f"synth-{k:03d}.wav", y, sample_rate, subtype="FLOAT")
            write_text(stage / f"synth-{k:03d}.selections.txt", format_raven(events))
    return sorted(Path(output).glob("*.wav"))
