"""Audio -> spectrogram images with their pixel -> time/frequency mapping, and masked inversion.

Frames start every ``hop_length`` samples with no padding (frame j covers samples
[j * hop, j * hop + win_length)), as MATLAB's ``stft`` does; so a recording cut into pieces at multiples
of the hop gives exactly the columns of the whole. Images have high frequencies at the top.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any

import numpy as np

from unetseg.audio.settings import MAX_FFT, MAX_MELS, MAX_RATE
from unetseg.core.config import check_fields, option
from unetseg.core.errors import UnetsegError, schema_error

SCALES = ("db", "magnitude", "power")
AXES = ("linear", "mel")
COMMON_WINDOWS = ("hann", "hamming", "blackman", "boxcar", "bartlett", "triang", "blackmanharris", "nuttall")


@dataclass(frozen=True)
class SpectrogramConfig:
    """How audio becomes an image. ``sample_rate`` None keeps each file's own rate."""

    sample_rate: int | None = option(22050, "resample to this rate (0: keep each file's rate)", metavar="HZ",
                                     ge=1, le=MAX_RATE)
    n_fft: int = option(512, "FFT length", metavar="N", ge=8, le=MAX_FFT)
    win_length: int | None = option(None, "window length in samples", metavar="N", default_text="n_fft", ge=8,
                                    le=MAX_FFT)
    hop_length: int = option(128, "hop between frames in samples", metavar="N", flag="--hop", ge=1, le=MAX_FFT)
    window: str = option("hann", "STFT window name (hann, hamming, blackman, ...)", metavar="NAME",
                         flag="--stft-window")
    symmetric_window: bool = False
    two_sided: bool = option(False, "two-sided (fftshift-ed) spectrum")
    axis: str = option("linear", "frequency axis", AXES)
    n_mels: int = option(128, "mel bands (axis mel)", metavar="N", ge=1, le=MAX_MELS)
    fmin: float = option(0.0, "lowest frequency (Hz)", metavar="HZ", ge=0.0, le=MAX_RATE / 2)
    fmax: float | None = option(None, "highest frequency (Hz)", metavar="HZ", default_text="Nyquist", gt=0.0,
                                le=MAX_RATE / 2)
    scale: str = option("db", "pixel values", SCALES)
    db_floor: float = option(-100.0, "dB (re full scale) drawn black (scale db; below 0)", metavar="DB", ge=-300.0,
                             lt=0.0)
    gain: float = 1.0

    def __post_init__(self) -> None:
        import math

        check_fields(self, "spectrogram ")  # types' bounds: one definition for flags, files and YAML
        numbers = {"fmin": self.fmin, "fmax": self.fmax, "db_floor": self.db_floor, "gain": self.gain}
        if not all(v is None or (isinstance(v, int | float) and math.isfinite(v)) for v in numbers.values()):
            raise UnetsegError(f"spectrogram settings must be finite numbers ({numbers})")
        if self.fmin < 0 or (self.fmax is not None and self.fmax <= self.fmin) or self.gain <= 0:
            raise UnetsegError(f"spectrogram band {self.fmin}-{self.fmax} Hz or gain {self.gain} is out of range")
        if self.scale == "db" and not -300 <= self.db_floor < 0:
            raise UnetsegError(f"spectrogram db_floor {self.db_floor} must lie in [-300, 0) dB")
        try:
            if self.window not in COMMON_WINDOWS:  # scipy.signal takes a second to import: only for the rest
                from scipy.signal import get_window

                get_window(self.window, 16)
        except (ValueError, TypeError):
            raise UnetsegError(f"unknown STFT window {str(self.window)[:40]!r} (hann, hamming, blackman, ...)"
                               ) from None
        if self.win > self.n_fft or self.hop_length < 1 or self.hop_length > self.win:
            raise UnetsegError(f"bad STFT: window {self.win}, hop {self.hop_length}, n_fft {self.n_fft}")
        if self.axis == "mel" and self.two_sided:
            raise UnetsegError("a mel axis needs a one-sided spectrum")

    @property
    def win(self) -> int:
        return self.win_length or self.n_fft

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "spectrogram") -> SpectrogramConfig:
        """Settings read from a file (a model file, a dataset YAML, a review), checked by type first: an
        integer is an integer (not ``true``, ``512.5`` or ``"abc"``), then by range."""
        from pydantic import ValidationError

        if not isinstance(data, dict):
            raise UnetsegError(f"{where}: must be a mapping of spectrogram settings, not {type(data).__name__}")
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise UnetsegError(f"{where}: unknown spectrogram setting(s) {', '.join(sorted(map(str, unknown)))}")
        try:
            return cls(**_settings_schema().model_validate(data).model_dump())
        except ValidationError as e:
            raise schema_error(e, where) from None


@lru_cache(maxsize=1)
def _settings_schema() -> Any:
    """The pydantic schema of ``SpectrogramConfig``'s fields: strict types, finite numbers, no other keys."""
    import dataclasses
    import typing

    from pydantic import ConfigDict, create_model

    hints = typing.get_type_hints(SpectrogramConfig)
    return create_model("SpectrogramSettings", __config__=ConfigDict(strict=True, extra="forbid", allow_inf_nan=False),
                        **{f.name: (hints[f.name], f.default) for f in dataclasses.fields(SpectrogramConfig)})


PRESETS: dict[str, SpectrogramConfig] = {
    # Small images for training and fast detection: 256 rows up to 11 kHz, 5.8 ms per column.
    "default": SpectrogramConfig(),
    # BirdSoundsDenoising (Zhang & Li, WACV 2023): MATLAB stft(y, Fs, Window=hamming(128), OverlapLength=64,
    # FFTLength=1024), two-sided, written as uint8(min(255, 255 * |S|)) at the file's own rate.
    "birdsoundsdenoising": SpectrogramConfig(sample_rate=None, n_fft=1024, win_length=128, hop_length=64,
                                             window="hamming", symmetric_window=True, two_sided=True,
                                             scale="magnitude"),
    # The built-in call prior's (audio/prior): each file's own rate, so rows are shares of the Nyquist frequency
    # and columns 128 samples; calls of any rate (a bat's 2 ms at 384 kHz, a thrush's 200 ms at 44.1 kHz) span
    # a few to a few hundred columns.
    "prior": SpectrogramConfig(sample_rate=None, n_fft=512, hop_length=128),
}


def preset(name: str, **changes: Any) -> SpectrogramConfig:
    if name not in PRESETS:
        raise UnetsegError(f"unknown spectrogram preset {name!r} (known: {', '.join(PRESETS)})")
    return replace(PRESETS[name], **changes)


def window_array(cfg: SpectrogramConfig) -> np.ndarray:
    from scipy.signal import get_window

    return get_window(cfg.window, cfg.win, fftbins=not cfg.symmetric_window).astype(np.float64)


def n_frames(n_samples: int, cfg: SpectrogramConfig) -> int:
    return 0 if n_samples < cfg.win else 1 + (n_samples - cfg.win) // cfg.hop_length


def frames(y: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """(n_frames, win) view of the signal."""
    count = n_frames(len(y), cfg)
    if count == 0:
        raise UnetsegError(f"audio of {len(y)} samples is shorter than one STFT window ({cfg.win} samples)")
    return np.lib.stride_tricks.sliding_window_view(y, cfg.win)[:: cfg.hop_length][:count]


def stft(y: np.ndarray, cfg: SpectrogramConfig, dtype: type = np.float32) -> np.ndarray:
    """Complex STFT, (bins, frames): one-sided rfft bins, or two-sided fftshift-ed (zero in the middle). The work
    is in ``dtype`` (float32: complex64 out, twice as fast as float64 and as exact as 16-bit audio needs).

    Framed by hand rather than with ``scipy.signal.ShortTimeFFT``, which centres windows on samples and pads
    the edges: here frame j starts at sample j * hop, so blocks streamed at hop multiples give exactly the
    columns of the whole recording (detect, tiles).
    """
    import scipy.fft

    x = frames(np.asarray(y, dtype), cfg) * window_array(cfg).astype(dtype)
    if cfg.two_sided:
        return np.fft.fftshift(scipy.fft.fft(x, n=cfg.n_fft, axis=1), axes=1).T
    return scipy.fft.rfft(x, n=cfg.n_fft, axis=1).T


@dataclass
class _MelCache:
    key: tuple = ()
    basis: np.ndarray = field(default_factory=lambda: np.zeros(0))


_mel = _MelCache()


def mel_basis(cfg: SpectrogramConfig, sr: int) -> np.ndarray:
    key = (sr, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
    if _mel.key != key:
        import librosa

        _mel.key, _mel.basis = key, librosa.filters.mel(sr=sr, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                                                         fmax=cfg.fmax)
    return _mel.basis


def _linear_rows(cfg: SpectrogramConfig, sr: int) -> np.ndarray:
    """Indices of STFT bins kept in the image (bottom to top) for a linear axis."""
    if cfg.two_sided:
        return np.arange(cfg.n_fft)
    freqs = np.arange(cfg.n_fft // 2) * sr / cfg.n_fft  # the Nyquist bin is left out: n_fft/2 rows
    fmax = cfg.fmax if cfg.fmax is not None else sr / 2
    return np.nonzero((freqs >= cfg.fmin) & (freqs < fmax))[0]


def check_band(cfg: SpectrogramConfig, sr: int, what: str) -> None:
    """Refuse settings whose band holds no row at ``sr`` (fmin at or above the Nyquist frequency)."""
    nyquist = sr / 2
    if cfg.fmin >= nyquist or (cfg.fmax is not None and cfg.fmax > nyquist * 1.0001):
        raise UnetsegError(f"{what}: the spectrogram band {cfg.fmin:g}-{cfg.fmax or nyquist:g} Hz reaches above the "
                           f"Nyquist frequency ({nyquist:g} Hz at {sr} Hz); lower --fmin/--fmax or raise "
                           "--sample-rate")
    if not len(row_frequencies(cfg, sr)):
        raise UnetsegError(f"{what}: the spectrogram band {cfg.fmin:g}-{cfg.fmax or nyquist:g} Hz holds no "
                           f"frequency row at n_fft {cfg.n_fft}")


def row_frequencies(cfg: SpectrogramConfig, sr: int) -> np.ndarray:
    """Centre frequency (Hz) of each image row, top row first."""
    if cfg.axis == "mel":
        import librosa

        hz = librosa.mel_frequencies(cfg.n_mels + 2, fmin=cfg.fmin, fmax=cfg.fmax or sr / 2)[1:-1]
    elif cfg.two_sided:
        hz = (np.arange(cfg.n_fft) - cfg.n_fft // 2) * sr / cfg.n_fft
    else:
        hz = _linear_rows(cfg, sr) * sr / cfg.n_fft
    return hz[::-1].astype(np.float64)


def spectrogram_rows(S: np.ndarray, cfg: SpectrogramConfig, sr: int) -> np.ndarray:
    """Magnitude per image row (bottom row first) from a complex STFT."""
    if cfg.axis == "mel":
        mag = np.abs(S)
        return np.sqrt(np.maximum(mel_basis(cfg, sr) @ (mag**2), 0))
    rows = _linear_rows(cfg, sr)
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1:  # a band of bins: a view, no gather
        return np.abs(S[rows[0]:rows[-1] + 1])
    return np.abs(S[rows])


def to_image(rows: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """Magnitudes (bottom row first) -> uint8 image (top row = highest frequency)."""
    if cfg.scale == "db":  # in place, in the rows' own precision
        value = rows / rows.dtype.type(window_array(cfg).sum() / 2)  # a full-scale sine reads 0 dB
        np.maximum(value, 1e-12, out=value)
        np.log10(value, out=value)
        value *= 20 / -cfg.db_floor  # (20 log10(v) - floor) / -floor
        value += 1
    elif cfg.scale == "power":
        value = rows**2 * cfg.gain
    else:
        value = rows * cfg.gain
    return np.rint(np.clip(value, 0, 1) * 255).astype(np.uint8)[::-1]  # rounds, as MATLAB's uint8()


@dataclass(frozen=True)
class SpectrogramMapping:
    """Pixel -> time and frequency for one image; saved beside it as JSON."""

    sample_rate: int
    start_sample: int
    hop_length: int
    win_length: int
    row_hz: list[float]
    config: dict[str, Any]

    def column_time(self, column: float) -> float:
        """Time (s) at the centre of a column, from the start of the recording."""
        return (self.start_sample + column * self.hop_length + self.win_length / 2) / self.sample_rate

    @property
    def column_seconds(self) -> float:
        return self.hop_length / self.sample_rate

    def span(self, first: int, stop: int) -> tuple[float, float]:
        """Begin and end (s) of columns ``[first, stop)``: each column spans one hop around its centre."""
        half = self.column_seconds / 2
        return self.column_time(first) - half, self.column_time(stop - 1) + half

    def columns(self, seconds: float) -> int:
        """The nearest whole number of columns to ``seconds``."""
        return int(round(seconds / self.column_seconds))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["first_column_s"] = self.column_time(0)
        d["column_s"] = self.column_seconds
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SpectrogramMapping:
        return cls(int(d["sample_rate"]), int(d["start_sample"]), int(d["hop_length"]), int(d["win_length"]),
                   list(d["row_hz"]), dict(d["config"]))


def spectrogram_image(y: np.ndarray, sr: int, cfg: SpectrogramConfig,
                      start_sample: int = 0) -> tuple[np.ndarray, SpectrogramMapping]:
    """uint8 image (rows x frames) of ``y`` and its mapping; ``start_sample`` places ``y`` in its recording."""
    image = to_image(spectrogram_rows(stft(y, cfg), cfg, sr), cfg)
    mapping = SpectrogramMapping(sr, start_sample, cfg.hop_length, cfg.win,
                                 row_frequencies(cfg, sr).round(3).tolist(), cfg.to_dict())
    return image, mapping


def bin_to_row(cfg: SpectrogramConfig, sr: int) -> np.ndarray:
    """For each STFT bin (in ``stft`` order), the image row (top-first index) that shows it."""
    rows_hz = row_frequencies(cfg, sr)
    if cfg.two_sided:
        return np.arange(cfg.n_fft)[::-1].copy()
    bin_hz = np.arange(cfg.n_fft // 2 + 1) * sr / cfg.n_fft
    # Rows are sorted high -> low; search on the ascending copy.
    ascending = rows_hz[::-1]
    idx = np.clip(np.searchsorted(ascending, bin_hz), 1, len(ascending) - 1)
    nearer_low = (bin_hz - ascending[idx - 1]) < (ascending[idx] - bin_hz)
    idx = np.where(nearer_low, idx - 1, idx)
    return (len(ascending) - 1 - idx).astype(np.int64)


def masked_frames(S: np.ndarray, mask: np.ndarray, cfg: SpectrogramConfig, sr: int) -> np.ndarray:
    """Windowed time frames (win x frames) of the STFT zeroed where ``mask`` (image rows x frames, top row
    first) is 0, or weighted by a soft mask in [0, 1]; bins outside the image's frequency range are zeroed.
    Overlap-adding them and dividing by the summed squared window inverts the STFT."""
    if mask.shape[1] != S.shape[1]:
        raise UnetsegError(f"mask has {mask.shape[1]} columns but the STFT {S.shape[1]} frames")
    gain = mask.astype(np.float64)[bin_to_row(cfg, sr)]
    if not cfg.two_sided and cfg.axis == "linear":
        kept = np.zeros(S.shape[0], bool)
        kept[_linear_rows(cfg, sr)] = True
        gain[~kept] = 0
    masked = S * gain
    if cfg.two_sided:
        x = np.fft.ifft(np.fft.ifftshift(masked, axes=0), axis=0).real
    else:
        x = np.fft.irfft(masked, n=cfg.n_fft, axis=0)
    return x[: cfg.win] * window_array(cfg)[:, None]


def overlap_add(out: np.ndarray, norm: np.ndarray, frames: np.ndarray, window: np.ndarray, hop: int,
                first: int) -> None:
    """Add ``frames`` (win, n) into ``out`` at samples ``first + j * hop``, and the squared window into ``norm``
    (the weighted overlap-add's divisor), in place."""
    win = frames.shape[0]
    for j in range(frames.shape[1]):
        s = first + j * hop
        out[s:s + win] += frames[:, j]
        norm[s:s + win] += window**2


def masked_inverse(S: np.ndarray, mask: np.ndarray, cfg: SpectrogramConfig, sr: int) -> np.ndarray:
    """Mask the complex STFT (see ``masked_frames``) and invert it by weighted overlap-add."""
    x = masked_frames(S, mask, cfg, sr)
    w = window_array(cfg)
    total = (S.shape[1] - 1) * cfg.hop_length + cfg.win
    out = np.zeros(total)
    norm = np.zeros(total)
    overlap_add(out, norm, x, w, cfg.hop_length, 0)
    return (out / np.maximum(norm, 1e-8)).astype(np.float32)


def spectrogram_bytes(samples: int, cfg: SpectrogramConfig) -> int:
    """Peak bytes of ``spectrogram_image`` (and the complex STFT a denoiser keeps) on ``samples`` samples: the
    windowed frames (float64), the complex spectrum and its FFT's work copy, magnitudes, rows and the image."""
    frames = max(1, n_frames(samples, cfg))
    bins = cfg.n_fft if cfg.two_sided else cfg.n_fft // 2 + 1
    rows = cfg.n_mels if cfg.axis == "mel" else bins
    per_frame = 8 * cfg.win + 16 * cfg.n_fft + 16 * bins + 8 * bins + 24 * rows + rows
    return frames * per_frame + samples * 8


def check_spectrogram_memory(samples: int, cfg: SpectrogramConfig, what: str, advice: str = "") -> None:
    """Refuse, before anything is decoded, a spectrogram whose estimate is over the memory budget."""
    from unetseg.core.budget import gib, memory_budget

    need, budget = spectrogram_bytes(samples, cfg), memory_budget()
    if need > budget:
        frames = max(1, n_frames(samples, cfg))
        raise UnetsegError(f"{what}: its spectrogram ({frames} frames of n_fft {cfg.n_fft}, hop {cfg.hop_length}) "
                           f"needs about {gib(need)}, over the memory budget of {gib(budget)}; raise --hop or lower "
                           f"--n-fft{advice}")
