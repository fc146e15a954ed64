"""Reading audio by content (WAV, FLAC, OGG, MP3 through libsndfile), whole or in blocks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import UnetsegError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aif", ".aiff", ".opus")


@dataclass(frozen=True)
class AudioInfo:
    path: Path
    sample_rate: int
    channels: int
    format: str
    duration: float  # seconds, from the header


def audio_info(path: str | Path) -> AudioInfo:
    """Format, rate and channels, read from the file's content (not its extension)."""
    path = Path(path)
    if not path.is_file():
        raise UnetsegError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise UnetsegError(f"{path}: not a readable audio file ({_reason(e)})") from e
    return AudioInfo(path, int(info.samplerate), int(info.channels), str(info.format), float(info.duration))


def _reason(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text.split(": ", 1)[-1] if ": " in text else text


def select_channel(block: np.ndarray, channel: int | None) -> np.ndarray:
    """Mono from (frames, channels): the mean, or one chosen channel."""
    if block.ndim == 1:
        return block
    if channel is None:
        return block.mean(axis=1, dtype=np.float32)
    if not 0 <= channel < block.shape[1]:
        raise UnetsegError(f"channel {channel} does not exist ({block.shape[1]} channels)")
    return np.ascontiguousarray(block[:, channel])


def load_audio(path: str | Path, sample_rate: int | None = None, channel: int | None = None) -> tuple[np.ndarray, int]:
    """Whole recording as float32 mono in [-1, 1], resampled to ``sample_rate`` when given."""
    info = audio_info(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise UnetsegError(f"{path}: cannot decode audio ({_reason(e)})") from e
    y = select_channel(data, channel)
    if y.size == 0:
        raise UnetsegError(f"{path}: the recording is empty")
    if sample_rate and sample_rate != info.sample_rate:
        y = resample(y, info.sample_rate, sample_rate)
        sr = sample_rate
    return y, int(sr)


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    import librosa

    return librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq").astype(np.float32)


def iter_blocks(path: str | Path, block_frames: int, overlap: int = 0,
                channel: int | None = None) -> Iterator[np.ndarray]:
    """Mono float32 blocks of ``block_frames`` samples, consecutive blocks sharing ``overlap`` samples;
    memory stays bounded whatever the recording's length."""
    audio_info(path)
    try:
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(blocksize=block_frames, overlap=overlap, dtype="float32", always_2d=True):
                yield select_channel(block, channel)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise UnetsegError(f"{path}: cannot decode audio ({_reason(e)})") from e


def check_not_silent(y: np.ndarray, path: str | Path) -> None:
    if not np.any(np.abs(y) > 1e-6):
        raise UnetsegError(f"{path}: the recording is silent (all samples zero)")
