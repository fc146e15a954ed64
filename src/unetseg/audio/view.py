"""Pieces of a recording for a person to see and hear: a spectrogram tile of any span at any width, and a
clip of any span, optionally band-passed. Each reads only its span from the file (a one-hour recording costs
what its tile costs)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import soundfile as sf

from unetseg.audio.recordings import _reason, audio_info, repair_samples, resample, select_channel
from unetseg.audio.spectrogram import SpectrogramConfig, n_frames, spectrogram_image
from unetseg.core.errors import UnetsegError

MAX_CLIP_SECONDS = 600.0
MAX_CLIP_SAMPLES = 1 << 23  # 190 s at 44.1 kHz, 22 s at 384 kHz: a band-passed clip stays near 0.5 GB
MAX_TILE_COLUMNS = 1 << 19  # STFT columns behind one tile (512 s at the default hop)
TILE_CHUNK_VALUES = 1 << 23  # STFT values computed at a time (32 MB of float32)
MIN_BAND_HZ = 1.0


def read_span(path: str | Path, begin: float, end: float, sample_rate: int | None = None,
              channel: int | None = None) -> tuple[np.ndarray, int, int]:
    """Mono float32 samples of ``[begin, end)`` s (clipped to the recording), resampled to ``sample_rate``
    when given; returns (samples, rate, the first sample's index at that rate)."""
    info = audio_info(path)
    rate = info.sample_rate
    total = round(info.duration * rate)
    first = max(0, math.floor(begin * rate))
    last = min(total, math.ceil(end * rate))
    converting = bool(sample_rate) and sample_rate != rate
    margin = 0
    if converting:  # start on the output's sample grid, with a margin for the resampler's edges, cut off after
        step = rate // math.gcd(rate, sample_rate)  # input samples per whole output sample
        first = first // step * step
        margin = min(first, -(-512 // step) * step)
        last = min(total, last + margin)
    try:
        with sf.SoundFile(str(path)) as f:
            f.seek(first - margin)
            data = f.read(max(0, last - first + margin), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise UnetsegError(f"{path}: cannot decode audio ({_reason(e)})") from e
    y = repair_samples(select_channel(data, channel), path)
    if converting and len(y):
        y = resample(y, rate, sample_rate)
        skip = margin * sample_rate // rate
        want = math.ceil((min(total, math.ceil(end * rate)) - first) * sample_rate / rate)
        return y[skip:skip + want], sample_rate, first * sample_rate // rate
    return y, rate, first


def spectrogram_tile(path: str | Path, cfg: SpectrogramConfig, begin: float, seconds: float, width: int,
                     channel: int | None = None, chunk: int = 4096) -> np.ndarray:
    """The spectrogram of ``[begin, begin + seconds)`` as the model sees it, ``width`` pixels wide (rows as
    the model's image): pixel x shows time ``begin + (x + 0.5) * seconds / width``, the loudest of its columns
    when it spans several; black past the end. The STFT runs ``chunk`` columns at a time (bounded memory)."""
    from unetseg.audio.spectrogram import row_frequencies

    info = audio_info(path)
    sr = cfg.sample_rate or info.sample_rate
    hop, win = cfg.hop_length, cfg.win
    columns = seconds * sr / hop
    if columns > MAX_TILE_COLUMNS:
        raise UnetsegError(f"a tile of {seconds:g} s spans {columns:.0f} STFT columns (hop {hop} at {sr} Hz), over "
                           f"{MAX_TILE_COLUMNS}; ask for a shorter span")
    rows = cfg.n_fft if cfg.two_sided else cfg.n_fft // 2 + 1
    chunk = max(1, min(chunk, TILE_CHUNK_VALUES // max(rows, 1)))  # n_fft 65536: a few columns at a time
    total = n_frames(round(info.duration * sr), cfg)
    # column c is centred at (c * hop + win / 2) / sr (SpectrogramMapping.column_time)
    edges = np.floor((begin + np.arange(width + 1) * seconds / width) * sr / hop - win / 2 / hop + 0.5).astype(np.int64)
    centres = np.floor(((begin + (np.arange(width) + 0.5) * seconds / width) * sr - win / 2) / hop + 0.5)
    first, last = max(0, int(min(edges[0], centres.min()))), min(total, int(max(edges[-1], centres.max())) + 1)
    out = np.zeros((len(row_frequencies(cfg, sr)), width), np.uint8)
    if last <= first:
        return out
    parts = []
    for c in range(first, last, chunk):
        n = min(chunk, last - c)
        y, _, start = read_span(path, c * hop / sr, ((c + n - 1) * hop + win) / sr, sr, channel)
        y = y[max(0, c * hop - start):][: (n - 1) * hop + win]
        if n_frames(len(y), cfg):
            parts.append(spectrogram_image(y, sr, cfg)[0])
    if not parts:
        return out
    image = np.concatenate(parts, axis=1)  # columns first..first + image.shape[1]
    columns = centres.astype(np.int64) - first
    inside = (columns >= 0) & (columns < image.shape[1])
    if seconds * sr / hop / width > 1.5:  # many columns per pixel: the loudest, so that a short call still shows
        starts = np.clip(edges[:-1] - first, 0, image.shape[1] - 1)
        out[:, inside] = np.maximum.reduceat(image, starts, axis=1)[:, inside]
    else:
        out[:, inside] = image[:, columns[inside]]
    return out


def clip_wav(path: str | Path, begin: float, end: float, low: float | None = None, high: float | None = None,
             channel: int | None = None) -> bytes:
    """``[begin, end)`` s of the recording at its own rate as a 16-bit WAV, band-passed to ``low``-``high``
    Hz when given (a 4th-order Butterworth, run forwards and backwards: no phase shift)."""
    if not end > begin or end - begin > MAX_CLIP_SECONDS:
        raise UnetsegError(f"a clip must last between 0 and {MAX_CLIP_SECONDS:g} s, not {end - begin:g} s")
    rate = audio_info(path).sample_rate
    if (end - begin) * rate > MAX_CLIP_SAMPLES:
        raise UnetsegError(f"a clip of {end - begin:g} s at {rate} Hz is {(end - begin) * rate:.0f} samples, over "
                           f"{MAX_CLIP_SAMPLES} ({MAX_CLIP_SAMPLES / rate:.1f} s at this rate); ask for a shorter one")
    for edge in (low, high):
        if edge is not None and 0 < edge < MIN_BAND_HZ:
            raise UnetsegError(f"band edge {edge:g} Hz: give 0 (none) or at least {MIN_BAND_HZ:g} Hz")
    y, rate, _ = read_span(path, begin, end, None, channel)
    nyquist = rate / 2
    if len(y) > 27 and (low is not None or high is not None):
        from scipy.signal import butter, sosfiltfilt

        lo = low if low is not None and low > 0 else None
        hi = high if high is not None and high < nyquist * 0.99 else None
        if lo is not None and hi is not None and hi <= lo:
            raise UnetsegError(f"band {low:g}-{high:g} Hz is empty")
        band = [lo, hi] if lo and hi else lo or hi
        kind = "bandpass" if lo and hi else "highpass" if lo else "lowpass"
        if band is not None:
            y = sosfiltfilt(butter(4, band, btype=kind, fs=rate, output="sos"), y).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, np.clip(y, -1, 1), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def loudness_line(path: str | Path, width: int, channel: int | None = None, block: int = 1 << 20) -> list[float]:
    """A recording's loudness over ``width`` equal spans of time: in each, the loudest 10 ms (RMS, dB re full
    scale, floored at -120 dB; longer frames for a long recording); read ``block`` samples at a time, so an
    hour costs what a block costs."""
    info = audio_info(path)
    rate, total = info.sample_rate, max(1, round(info.duration * info.sample_rate))
    frame = max(1, rate // 100, -(-total // (width * 100)))  # at most 100 frames per bin
    frames = -(-total // frame)
    energy = np.zeros(frames, np.float64)
    done = 0
    try:
        with sf.SoundFile(str(path)) as f:
            for data in f.blocks(blocksize=block - block % frame or frame, dtype="float32", always_2d=True):
                y = select_channel(data, channel).astype(np.float64)
                first = done // frame
                part = np.bincount((done + np.arange(len(y))) // frame - first, weights=y * y)
                energy[first:first + len(part)] += part[:frames - first]
                done += len(y)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise UnetsegError(f"{path}: cannot decode audio ({_reason(e)})") from e
    counts = np.full(frames, frame, np.float64)
    counts[-1] = done - frame * (frames - 1) if done > frame * (frames - 1) else frame
    db = 10 * np.log10(np.maximum(energy / counts, 1e-12))
    edges = np.linspace(0, frames, width + 1).astype(np.int64)
    edges[1:] = np.maximum(edges[1:], edges[:-1] + 1)
    edges = np.minimum(edges, frames)
    line = [float(db[a:b].max()) if b > a else -120.0 for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return [round(max(-120.0, v), 1) for v in line]
