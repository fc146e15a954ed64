"""Reading audio by content (WAV, FLAC, OGG, MP3 through libsndfile), whole or in blocks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from unetseg.core.errors import UnetsegError

log = logging.getLogger(__name__)

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
    """Whole recording as float32 mono in [-1, 1], resampled to ``sample_rate`` when given. Refused before
    decoding when it would not fit the memory budget; NaN/inf samples become 0 with a warning."""
    from unetseg.core.budget import gib, memory_budget

    info = audio_info(path)
    frames = round(info.duration * info.sample_rate)
    ratio = (sample_rate or info.sample_rate) / info.sample_rate
    need = frames * 4 * (info.channels + 1 + 2 * ratio)  # decoded, mono, resampled (and its work copy)
    if need > memory_budget():
        raise UnetsegError(f"{path}: {info.duration:.0f} s of {info.channels}-channel audio needs about {gib(need)} "
                           f"to load whole, over the memory budget of {gib(memory_budget())}; cut it into shorter "
                           "files (audio detect reads any length in blocks)")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise UnetsegError(f"{path}: cannot decode audio ({_reason(e)})") from e
    y = select_channel(data, channel)
    if y.size == 0:
        raise UnetsegError(f"{path}: the recording is empty")
    check_length(path, info, len(y))
    y = repair_samples(y, path)
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
    info = audio_info(path)
    read, bad = 0, 0
    try:
        with sf.SoundFile(str(path)) as f:
            for block in f.blocks(blocksize=block_frames, overlap=overlap, dtype="float32", always_2d=True):
                y, nonfinite = _silence_nonfinite(select_channel(block, channel))
                read += len(y) - (overlap if read else 0)
                bad += nonfinite
                yield y
    except (sf.LibsndfileError, RuntimeError) as e:
        raise UnetsegError(f"{path}: cannot decode audio ({_reason(e)})") from e
    if bad:
        log.warning("%s: %d NaN or infinite samples were read as silence", path, bad)
    check_length(path, info, read)


def repair_samples(y: np.ndarray, path: str | Path) -> np.ndarray:
    """NaN and infinite samples (a broken float WAV) as silence, with one warning naming the file."""
    y, bad = _silence_nonfinite(y)
    if bad:
        log.warning("%s: %d NaN or infinite samples were read as silence", path, bad)
    return y


def _silence_nonfinite(y: np.ndarray) -> tuple[np.ndarray, int]:
    """``y`` with NaN and infinite samples set to 0, and how many there were."""
    finite = np.isfinite(y)
    if finite.all():
        return y, 0
    return np.where(finite, y, np.float32(0)), int((~finite).sum())


def check_length(path: str | Path, info: AudioInfo, read: int) -> None:
    """A WAV cut short (its header promises more samples than it holds; libsndfile reads what is there) is
    read as far as it goes, with a warning."""
    promised = wav_header_frames(path) if info.format.upper().startswith("WAV") else None
    if promised is not None and read < promised:
        log.warning("%s: the header promises %d samples (%.2f s) but only %d could be read; the file is cut short",
                    path, promised, promised / info.sample_rate, read)


def wav_header_frames(path: str | Path) -> int | None:
    """Sample frames a RIFF/WAVE header declares (its data chunk's size over the frame size), or None."""
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, align = 12, None
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], struct.unpack("<I", head[pos + 4:pos + 8])[0]
        if chunk == b"fmt " and pos + 22 <= len(head):
            align = struct.unpack("<H", head[pos + 20:pos + 22])[0]
        if chunk == b"data":
            return size // align if align and size != 0xFFFFFFFF else None
        pos += 8 + size + (size & 1)
    return None


def check_not_silent(y: np.ndarray, path: str | Path) -> None:
    if not np.any(np.abs(y) > 1e-6):
        raise UnetsegError(f"{path}: the recording is silent (all samples zero)")
