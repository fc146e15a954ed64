"""Detection on recordings of any length in bounded memory, on the inference engine.

Audio is read in blocks, resampled as a stream, and turned into spectrogram columns (the front end, in
float32, in a thread of its own one block ahead of the model: ``Prefetch``); the engine's ``ColumnStream``
runs overlapping full-height windows over the columns. Columns no later window can touch are final: in a
thread behind the model (``Behind``) they are blended and go to the event tracker (regions -> events, cut at
silent gaps); with a denoiser (mask the complex STFT, overlap-add), on the model's thread. Every buffer holds at
most one block of audio plus one window of columns, whatever the recording's length. A ``Detector`` loads
the model's backend once for any number of recordings, and ``run_many`` starts the next recording's front
end while the model runs this one."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetseg.audio.annotations import Event
from unetseg.audio.events import EventTracker, decoding
from unetseg.audio.recordings import AudioInfo, audio_info, iter_blocks
from unetseg.audio.settings import GRANULARITY, DetectOptions, EventOptions
from unetseg.audio.spectrogram import (
    SpectrogramConfig,
    SpectrogramMapping,
    check_band,
    masked_frames,
    n_frames,
    overlap_add,
    row_frequencies,
    spectrogram_bytes,
    spectrogram_rows,
    stft,
    to_image,
    window_array,
)
from unetseg.core.errors import UnetsegError
from unetseg.core.guard import temp_path
from unetseg.core.threads import Behind, Prefetch
from unetseg.inference import Engine, InferenceOptions, to_classes
from unetseg.inference.windows import Blend, ColumnStream
from unetseg.instances.centres import HEAD_CHANNELS
from unetseg.models.modelfile import LoadedModel
from unetseg.prediction.postprocess import PostProcess, threshold_for

log = logging.getLogger(__name__)


def spectrogram_config(loaded: LoadedModel, override: SpectrogramConfig | None = None) -> SpectrogramConfig:
    if override is not None:
        return override
    if not loaded.meta.get("spectrogram"):
        raise UnetsegError("this model was not trained on a spectrogram dataset; name the spectrogram settings "
                           "(--preset)")
    return SpectrogramConfig.from_dict(loaded.meta["spectrogram"])


def tuned_events(loaded: LoadedModel) -> dict[str, float | str]:
    """The event settings tuned on the validation split after training (stored in the model file), if any."""
    tuned = loaded.meta.get("detect") or {}
    out: dict[str, float | str] = {k: float(tuned[k]) for k in ("min_duration", "merge_gap", "peak_threshold")
                                   if k in tuned}
    if tuned.get("granularity") in GRANULARITY:
        out["granularity"] = str(tuned["granularity"])
    return out


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


class Denoiser:
    """Masks complex STFT frames and writes the weighted overlap-add as it becomes complete."""

    def __init__(self, path: Path, cfg: SpectrogramConfig, sr: int) -> None:
        import soundfile as sf

        self.cfg, self.sr, self.w = cfg, sr, window_array(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_path(path)
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
        overlap_add(self.ola, self.norm, x, self.w, hop, first_frame * hop - self.written)
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


FRONT_END_DTYPE = np.float32  # of the STFT and dB scaling (float64 gives the same events, at half the speed)


@dataclass
class _Opened:
    """A recording whose front end has started: its header, the columns being made, and the count of samples
    decoded so far."""

    path: Path
    info: AudioInfo
    front: Prefetch
    decoded: list[int]


def _columns(path: Path, info: AudioInfo, cfg: SpectrogramConfig, block_seconds: float, channel: int | None,
             keep_stft: bool, decoded: list[int]) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield (image columns, complex STFT columns or None) block by block; count samples in ``decoded``."""
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
            S = stft(buffer[:used], cfg, FRONT_END_DTYPE)
            yield to_image(spectrogram_rows(S, cfg, sr), cfg), (S if keep_stft else None)
            buffer = buffer[count * hop:]
        current = following


def check_recordings(files: list[Path], cfg: SpectrogramConfig, channel: int | None = None) -> None:
    """Every recording readable, holding the channel asked for and at least one STFT frame: checked from the
    headers before any output is written."""
    for f in files:
        info = audio_info(f)
        if channel is not None and not 0 <= channel < info.channels:
            raise UnetsegError(f"{f}: channel {channel} does not exist ({info.channels} channels)")
        sr = cfg.sample_rate or info.sample_rate
        check_band(cfg, sr, str(f))
        if info.duration * sr < cfg.win:
            raise UnetsegError(f"{f}: {info.duration * 1000:.1f} ms of audio is shorter than one STFT window "
                               f"({cfg.win} samples at {sr} Hz); it has no spectrogram frame to detect in")


class Detector:
    """A model's engine, loaded once, and the settings that turn recordings into events."""

    def __init__(self, loaded: LoadedModel, options: DetectOptions | None = None,
                 inference: InferenceOptions | None = None, postprocess: PostProcess | None = None,
                 events: EventOptions | None = None, spectrogram: SpectrogramConfig | None = None) -> None:
        self.loaded = loaded
        self.options = options or DetectOptions()
        self.columns = loaded.meta.get("events") == "time"
        self.instances = loaded.head  # False: decode as a model without the head (columns or regions)
        self.postprocess = postprocess or PostProcess()
        self.events = (events or EventOptions(**tuned_events(loaded))).resolved()
        self.cfg = spectrogram_config(loaded, spectrogram)
        spec = loaded.input_spec
        self.trained = trained = spec.size[1] if spec.size else 256  # columns of the training windows
        self.width = self.options.window or 4 * trained
        if self.width % spec.divisor:
            raise UnetsegError(f"--window {self.width} is not divisible by the model's stride {spec.divisor}")
        self.overlap = self.options.overlap if self.options.overlap is not None else trained // 4
        if self.overlap >= self.width:
            raise UnetsegError(f"--overlap {self.overlap} must be smaller than the window ({self.width} columns)")
        inference = inference or InferenceOptions()
        # --batch-size counts windows of the training width: wider windows go fewer at a time (memory).
        self.batch = max(1, inference.batch_size * trained // self.width)
        rows = len(row_frequencies(self.cfg, self.cfg.sample_rate or 22050))
        self.engine = Engine(loaded, inference, shape=(self.batch, 1, rows, self.width))
        self.threshold = threshold_for(loaded, self.postprocess)

    def _block_seconds(self, path: Path, info: AudioInfo, keep_mask: bool) -> float:
        """--block-seconds, shortened where a block's decoding and spectrogram would pass a quarter of the memory
        budget; a recording whose whole mask (--save-mask) or whose single window would not fit is refused."""
        from unetseg.core.budget import gib, memory_budget

        cfg, budget = self.cfg, memory_budget()
        sr = cfg.sample_rate or info.sample_rate
        rows = len(row_frequencies(cfg, sr))
        if keep_mask:
            columns = max(1, int(info.duration * sr) // cfg.hop_length)
            if 2 * rows * columns > budget:
                raise UnetsegError(f"{path}: the whole mask of {info.duration:.0f} s ({rows} x {columns} pixels) needs "
                                   f"about {gib(2 * rows * columns)}, over the memory budget of {gib(budget)}; drop "
                                   "--save-mask (events and --denoise are written in blocks)")

        def need(seconds: float) -> int:
            samples = int(seconds * sr)
            decoded = int(seconds * info.sample_rate) * 4 * (info.channels + 2)
            return spectrogram_bytes(samples, cfg) + decoded

        seconds = self.options.block_seconds
        least = ((self.width - 1) * cfg.hop_length + cfg.win) / sr  # one model window of columns
        while seconds > least and need(seconds) > budget // 4:
            seconds = max(least, seconds / 2)
        if need(seconds) > budget // 4:
            raise UnetsegError(f"{path}: one window of {self.width} columns (n_fft {cfg.n_fft}, hop {cfg.hop_length}) "
                               f"needs about {gib(need(seconds))} to decode, over a quarter of the memory budget of "
                               f"{gib(budget)}; lower --window or use a model with a smaller spectrogram")
        if seconds < self.options.block_seconds:
            log.info("%s: reading %.2f s at a time (not %g) to stay within the memory budget", path, seconds,
                     self.options.block_seconds)
        return seconds

    def describe(self) -> dict:
        return {**self.engine.describe(), "decoding": decoding(self.instances, self.columns, self.events.granularity),
                "window": self.width, "overlap": self.overlap,
                "windows_per_batch": self.batch, "block_seconds": self.options.block_seconds,
                "postprocess": vars(self.postprocess), "events": vars(self.events)}

    def _open(self, path: str | Path, keep_stft: bool, keep_mask: bool) -> _Opened:
        """Check ``path`` and start making its spectrogram columns in the front end's thread."""
        path = Path(path)
        info = audio_info(path)
        block_seconds = self._block_seconds(path, info, keep_mask)
        decoded = [0]
        front = Prefetch(_columns(path, info, self.cfg, block_seconds, self.options.channel, keep_stft, decoded))
        return _Opened(path, info, front, decoded)

    def run_many(self, paths: list[Path], denoise: Callable[[Path], Path | None] = lambda _: None,
                 keep_mask: bool = False) -> Iterator[tuple[Path, DetectResult]]:
        """(recording, result) of each of ``paths`` in order: the next one's front end runs during this one's model
        work, and its model work during this one's last events. An error opening one is raised at its turn."""
        def opened(i: int) -> _Opened | Exception | None:
            if i >= len(paths):
                return None
            try:
                return self._open(paths[i], denoise(paths[i]) is not None, keep_mask)
            except UnetsegError as e:
                return e

        ahead, previous = opened(0), None
        try:
            for i, path in enumerate(paths):
                current, ahead = ahead, opened(i + 1)
                try:
                    if isinstance(current, Exception):
                        raise current
                    running = self._start(path, denoise(path), keep_mask, current)
                except UnetsegError:  # at its turn: after the result of the recording before it
                    if previous is not None:
                        done, previous = previous, None
                        yield done.path, done.result()
                    raise
                if previous is not None:
                    yield previous.path, previous.result()
                previous = running
            if previous is not None:
                done, previous = previous, None
                yield done.path, done.result()
        finally:
            if previous is not None:
                previous.abort()
            if isinstance(ahead, _Opened):
                ahead.front.close()

    def run(self, path: str | Path, denoise: str | Path | None = None, keep_mask: bool = False,
            opened: _Opened | None = None) -> DetectResult:
        """Events (and optionally denoised audio and the full mask) of one recording of any length; ``opened``:
        its front end, started before (``run_many``)."""
        return self._start(path, denoise, keep_mask, opened).result()

    def _start(self, path: str | Path, denoise: str | Path | None, keep_mask: bool,
               opened: _Opened | None) -> _Running:
        """The model's work on one recording, done; its last columns may still be blending and decoding behind."""
        loaded, cfg = self.loaded, self.cfg
        opened = opened or self._open(path, denoise is not None, keep_mask)
        sr = cfg.sample_rate or opened.info.sample_rate
        mapping = SpectrogramMapping(sr, 0, cfg.hop_length, cfg.win, row_frequencies(cfg, sr).round(3).tolist(),
                                     cfg.to_dict())
        tracker = EventTracker(mapping, loaded.classes, self.events, columns=self.columns, threshold=self.threshold)
        denoiser = Denoiser(Path(denoise), cfg, sr) if denoise else None
        channels = loaded.outputs + (HEAD_CHANNELS if loaded.head else 0)
        stream = ColumnStream(self.engine.native, channels, self.width, self.overlap, self.batch, blend="linear",
                              pad_to=loaded.input_spec.divisor, min_width=self.trained)
        running = _Running(opened, tracker, denoiser, keep_mask, sr)

        def finished(item: tuple[Blend, np.ndarray | None]) -> None:
            blend, S = item
            if S is not None:
                running.pending_stft.append(S)
            outputs = blend()
            k = outputs.shape[-1]
            if not k:
                return
            probs, head = outputs[:loaded.outputs], (outputs[loaded.outputs:] if self.instances else None)
            mask = to_classes(probs, loaded.binary, self.threshold)
            tracker.push(mask, probs[0] if loaded.binary else probs, head)
            if denoiser is not None:
                stfts = np.concatenate(running.pending_stft, axis=1)
                denoiser.push(stfts[:, :k], mask > 0, running.done)
                running.pending_stft = [stfts[:, k:]]
            if keep_mask:
                running.mask_parts.append(mask)
            running.done += k

        # blending and events behind the model, in a thread; a denoiser's audio on the model's thread, block by block
        running.behind = Behind(finished) if denoiser is None else None
        after = running.behind.put if running.behind is not None else finished
        try:
            for columns, S in opened.front:
                after((stream.advance(columns), S))
            after((stream.end(), None))
        except BaseException:
            running.abort()
            raise
        return running


@dataclass
class _Running:
    """One recording whose model work is done: its last columns blending and events decoding behind."""

    opened: _Opened
    tracker: EventTracker
    denoiser: Denoiser | None
    keep_mask: bool
    sample_rate: int
    behind: Behind | None = None  # set by Detector._start: blending and events behind the model (none to denoise)
    done: int = 0  # recording columns finished
    pending_stft: list[np.ndarray] = field(default_factory=list)
    mask_parts: list[np.ndarray] = field(default_factory=list)

    path = property(lambda self: self.opened.path)

    def result(self) -> DetectResult:
        """Wait for the last events, and finish the denoised audio."""
        try:
            if self.behind is not None:
                self.behind.finish()
        except BaseException:
            self.abort()
            raise
        if self.denoiser is not None:
            self.denoiser.finish()
        mask = np.concatenate(self.mask_parts, axis=1) if self.keep_mask and self.mask_parts else None
        return DetectResult(self.tracker.finish(), self.opened.decoded[0] / self.opened.info.sample_rate,
                            self.sample_rate, self.done, mask)

    def abort(self) -> None:
        self.opened.front.close()
        if self.behind is not None:
            self.behind.close()
        if self.denoiser is not None:
            self.denoiser.abort()


def detect_recording(loaded: LoadedModel, path: str | Path, options: DetectOptions | None = None,
                     inference: InferenceOptions | None = None, postprocess: PostProcess | None = None,
                     events: EventOptions | None = None, denoise: str | Path | None = None,
                     keep_mask: bool = False) -> DetectResult:
    """One recording through a new ``Detector`` (use a Detector, or ``detect_folder``, for several)."""
    return Detector(loaded, options, inference, postprocess, events).run(path, denoise, keep_mask)
