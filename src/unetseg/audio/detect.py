"""Detection on recordings of any length in bounded memory.

Audio is read in blocks, resampled as a stream, and turned into spectrogram columns; the model sees
overlapping windows of the columns, whose probabilities are blended with triangular weights. Columns no
later window can touch are final: they go to the event tracker (regions -> events, cut at silent gaps)
and, optionally, to the denoiser (mask the complex STFT, overlap-add). Every buffer holds at most one
block of audio plus one window of columns, whatever the recording's length.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UnetsegError
from ..modelfile import LoadedModel
from ..predict import Predictor
from .annotations import Event
from .io import audio_info, iter_blocks
from .masks import mask_to_events
from .spectrogram import (
    SpectrogramConfig,
    SpectrogramMapping,
    masked_frames,
    n_frames,
    row_frequencies,
    spectrogram_rows,
    stft,
    to_image,
    window_array,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectOptions:
    min_duration: float = 0.01
    min_bandwidth: float = 0.0
    merge_gap: float = 0.01
    threshold: float | None = None
    window: int | None = None  # columns per model window; default: the model's input width
    overlap: int | None = None  # columns shared by neighbouring windows; default: a quarter window
    batch_size: int = 8
    block_seconds: float = 20.0
    max_event_seconds: float = 60.0  # an event longer than this is cut (bounds memory)


def spectrogram_config(loaded: LoadedModel, override: SpectrogramConfig | None = None) -> SpectrogramConfig:
    if override is not None:
        return override
    if not loaded.meta.get("spectrogram"):
        raise UnetsegError("this model was not trained on a spectrogram dataset; name the spectrogram settings "
                           "(--preset)")
    return SpectrogramConfig.from_dict(loaded.meta["spectrogram"])


class _Resampler:
    def __init__(self, orig: int, target: int) -> None:
        self.stream = None
        if orig != target:
            import soxr

            self.stream = soxr.ResampleStream(orig, target, 1, dtype="float32", quality="HQ")

    def __call__(self, x: np.ndarray, last: bool) -> np.ndarray:
        if self.stream is None:
            return x
        return self.stream.resample_chunk(x, last=last)


@dataclass
class EventTracker:
    """Turns finalized mask columns into events, holding only the columns of events still open."""

    mapping: SpectrogramMapping
    class_names: list[str]
    options: DetectOptions
    events: list[Event] = field(default_factory=list)
    _mask: np.ndarray | None = None
    _probs: np.ndarray | None = None
    _start: int = 0  # recording column of the first pending column

    def push(self, mask: np.ndarray, probs: np.ndarray) -> None:
        if self._mask is None:
            self._mask, self._probs = mask, probs
        else:
            self._mask = np.concatenate([self._mask, mask], axis=1)
            self._probs = np.concatenate([self._probs, probs], axis=-1)
        gap = max(1, int(round(self.options.merge_gap / self.mapping.column_seconds))) + 1
        positive = np.asarray(self.mapping.row_hz) >= 0
        empty = ~(self._mask[positive] > 0).any(axis=0)
        cut = _last_gap_end(empty, gap)
        limit = int(self.options.max_event_seconds / self.mapping.column_seconds)
        if cut is None and self._mask.shape[1] > limit:
            cut = self._mask.shape[1]
        if cut:
            self._flush(cut)

    def _flush(self, cut: int) -> None:
        assert self._mask is not None and self._probs is not None
        self.events += mask_to_events(self._mask[:, :cut], self.mapping, self.class_names, self._probs[..., :cut],
                                      self.options.min_duration, self.options.min_bandwidth, self.options.merge_gap,
                                      column_offset=self._start)
        self._mask, self._probs = self._mask[:, cut:], self._probs[..., cut:]
        self._start += cut

    def finish(self) -> list[Event]:
        if self._mask is not None and self._mask.shape[1]:
            self._flush(self._mask.shape[1])
        return sorted(self.events, key=lambda e: (e.begin, e.label))


def _last_gap_end(empty: np.ndarray, gap: int) -> int | None:
    """Index just after the last run of >= ``gap`` empty columns that ends before the last column."""
    if len(empty) < gap:
        return None
    runs = np.convolve(empty.astype(np.int32), np.ones(gap, np.int32), mode="valid") == gap
    hits = np.nonzero(runs)[0]
    if not hits.size:
        return None
    return int(hits[-1]) + gap


class Denoiser:
    """Masks complex STFT frames and writes the weighted overlap-add as it becomes complete."""

    def __init__(self, path: Path, cfg: SpectrogramConfig, sr: int) -> None:
        import soundfile as sf

        self.cfg, self.sr, self.w = cfg, sr, window_array(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = path.with_name(f".{path.name}.partial")
        self.path = path
        self.file = sf.SoundFile(str(self.tmp), "w", samplerate=sr, channels=1, subtype="FLOAT", format="WAV")
        self.ola = np.zeros(0)
        self.norm = np.zeros(0)
        self.written = 0  # samples written

    def push(self, S: np.ndarray, mask: np.ndarray, first_frame: int) -> None:
        x = masked_frames(S, mask, self.cfg, self.sr)
        hop, win = self.cfg.hop_length, self.cfg.win
        end = (first_frame + S.shape[1] - 1) * hop + win
        grow = end - self.written - len(self.ola)
        if grow > 0:
            self.ola = np.concatenate([self.ola, np.zeros(grow)])
            self.norm = np.concatenate([self.norm, np.zeros(grow)])
        for j in range(S.shape[1]):
            s = (first_frame + j) * hop - self.written
            self.ola[s:s + win] += x[:, j]
            self.norm[s:s + win] += self.w**2
        complete = (first_frame + S.shape[1]) * hop - self.written  # later frames start at or after this
        self._write(complete)

    def _write(self, n: int) -> None:
        if n <= 0:
            return
        self.file.write((self.ola[:n] / np.maximum(self.norm[:n], 1e-8)).astype(np.float32))
        self.ola, self.norm = self.ola[n:], self.norm[n:]
        self.written += n

    def finish(self) -> Path:
        self._write(len(self.ola))
        self.file.close()
        self.tmp.replace(self.path)
        return self.path

    def abort(self) -> None:
        self.file.close()
        self.tmp.unlink(missing_ok=True)


@dataclass
class DetectResult:
    events: list[Event]
    duration: float
    sample_rate: int
    columns: int
    mask: np.ndarray | None = None


def _columns(path: Path, cfg: SpectrogramConfig, block_seconds: float, channel: int | None,
             keep_stft: bool, decoded: list[int]) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield (image columns, complex STFT columns or None) block by block; count samples in ``decoded``."""
    info = audio_info(path)
    sr = cfg.sample_rate or info.sample_rate
    resample = _Resampler(info.sample_rate, sr)
    hop, win = cfg.hop_length, cfg.win
    buffer = np.zeros(0, np.float32)
    block = max(win, int(block_seconds * info.sample_rate))
    blocks = iter_blocks(path, block, channel=channel)
    current = next(blocks, None)
    if current is None:
        raise UnetsegError(f"{path}: the recording is empty")
    while current is not None:
        following = next(blocks, None)
        decoded[0] += len(current)
        buffer = np.concatenate([buffer, resample(current, last=following is None)])
        count = n_frames(len(buffer), cfg)
        if count:
            used = (count - 1) * hop + win
            S = stft(buffer[:used], cfg)
            yield to_image(spectrogram_rows(S, cfg, sr), cfg), (S if keep_stft else None)
            buffer = buffer[count * hop:]
        current = following


def detect_recording(loaded: LoadedModel, path: str | Path, options: DetectOptions | None = None,
                     spectrogram: SpectrogramConfig | None = None, denoise: str | Path | None = None,
                     keep_mask: bool = False, channel: int | None = None, device: str = "auto",
                     backend: str = "torch", threads: int | None = None) -> DetectResult:
    """Events (and optionally denoised audio and the full mask) of one recording of any length."""
    options = options or DetectOptions()
    path = Path(path)
    cfg = spectrogram_config(loaded, spectrogram)
    spec = loaded.input_spec
    width = options.window or (spec.size[1] if spec.size else 256)
    overlap = options.overlap if options.overlap is not None else width // 4
    step = max(1, width - overlap)
    predictor = Predictor(loaded, device=device, batch_size=options.batch_size, backend=backend, threads=threads)
    threshold = loaded.threshold if options.threshold is None else options.threshold
    weights = np.minimum(np.arange(1, width + 1), np.arange(width, 0, -1)).astype(np.float32)

    info = audio_info(path)
    sr = cfg.sample_rate or info.sample_rate
    mapping = SpectrogramMapping(sr, 0, cfg.hop_length, cfg.win, row_frequencies(cfg, sr).round(3).tolist(),
                                 cfg.to_dict())
    tracker = EventTracker(mapping, loaded.classes, options)
    denoiser = Denoiser(Path(denoise), cfg, sr) if denoise else None
    mask_parts: list[np.ndarray] = []

    img = stfts = acc = wsum = None
    base = 0  # recording column of img[:, 0]
    next_start = 0  # recording column where the next window starts
    emitted = 0

    def run_windows(starts: list[int]) -> None:
        nonlocal acc, wsum
        for i in range(0, len(starts), options.batch_size):
            chunk = starts[i:i + options.batch_size]
            images = [img[:, s - base:s - base + width, None].astype(np.float32) / 255 for s in chunk]
            for s, probs in zip(chunk, predictor.probabilities(images), strict=True):
                acc[..., s - base:s - base + width] += probs.numpy() * weights
                wsum[s - base:s - base + width] += weights

    def emit(upto: int) -> None:
        """Finalize columns [base, upto) and drop them from the buffers."""
        nonlocal img, stfts, acc, wsum, base, emitted
        k = upto - base
        if k <= 0:
            return
        probs = acc[..., :k] / np.maximum(wsum[:k], 1e-8)
        if loaded.binary:
            mask = (probs[0] > threshold).astype(np.uint8)
            class_probs = probs[0]
        else:
            mask = probs.argmax(0).astype(np.uint8)
            class_probs = probs
        tracker.push(mask, class_probs)
        if denoiser is not None:
            denoiser.push(stfts[:, :k], mask > 0, base)
        if keep_mask:
            mask_parts.append(mask)
        img, acc, wsum = img[:, k:], acc[..., k:], wsum[k:]
        if stfts is not None:
            stfts = stfts[:, k:]
        base, emitted = upto, emitted + k

    decoded = [0]
    covered = 0  # columns [0, covered) have been seen by some window
    try:
        for columns, S in _columns(path, cfg, options.block_seconds, channel, denoiser is not None, decoded):
            channels = 1 if loaded.binary else len(loaded.classes)
            if img is None:
                img, stfts = columns, S
                acc = np.zeros((channels, columns.shape[0], columns.shape[1]), np.float32)
                wsum = np.zeros(columns.shape[1], np.float32)
            else:
                img = np.concatenate([img, columns], axis=1)
                stfts = np.concatenate([stfts, S], axis=1) if S is not None else None
                acc = np.concatenate([acc, np.zeros((channels, *columns.shape), np.float32)], axis=2)
                wsum = np.concatenate([wsum, np.zeros(columns.shape[1], np.float32)])
            end = base + img.shape[1]
            starts = []
            while next_start + width <= end:
                starts.append(next_start)
                covered = next_start + width
                next_start += step
            run_windows(starts)
            # Keep the last window's worth of columns: the final window may reach back into them.
            emit(min(next_start, end - width))
        total = base + (img.shape[1] if img is not None else 0)
        if total < width:
            seconds = ((width - 1) * cfg.hop_length + cfg.win) / sr
            raise UnetsegError(f"{path}: {total} spectrogram columns are fewer than one model window ({width} "
                               f"columns, {seconds:.2f} s)")
        if covered < total:  # one last window, aligned to the end
            run_windows([total - width])
        emit(total)
    except BaseException:
        if denoiser is not None:
            denoiser.abort()
        raise
    if denoiser is not None:
        denoiser.finish()
    mask = np.concatenate(mask_parts, axis=1) if keep_mask else None
    return DetectResult(tracker.finish(), decoded[0] / info.sample_rate, sr, emitted, mask)

