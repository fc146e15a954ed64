"""Spectrogram images of recordings, as files (``audio spectrogram``): one PNG and its time/frequency mapping
(JSON) per recording, and, given a mask of one, the denoised audio (the STFT masked and inverted)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetseg.audio.recordings import audio_info, check_not_silent, load_audio
from unetseg.audio.spectrogram import (
    SpectrogramConfig,
    check_band,
    check_spectrogram_memory,
    masked_inverse,
    spectrogram_image,
    stft,
)
from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import atomic_write, check_output_dir, write_json, write_png
from unetseg.core.guard import check_outputs
from unetseg.core.output_folder import written_by_us

SOFTWARE = "unetseg"  # the WAV's software tag: how a later --overwrite knows a denoised file for ours


@dataclass(frozen=True)
class Cut:
    """The part of each recording to show: from ``start_sample`` for ``duration`` seconds (all when None), of
    one ``channel`` (the mean of all when None)."""

    start_sample: int = 0
    duration: float | None = None
    channel: int | None = None


def write_spectrograms(files: list[Path], output: str | Path, cfg: SpectrogramConfig, cut: Cut = Cut(),
                       mask: str | Path | None = None, denoise: str | Path | None = None,
                       overwrite: bool = False) -> list[Path]:
    """``<output>/<stem>.png`` and ``.json`` for each of ``files``; with ``mask`` (a mask PNG of the one file's
    spectrogram) and ``denoise``, the denoised audio there too. Every output is planned and checked before
    anything is written; returns the PNGs."""
    from unetseg.data.images import read_mask_raw

    if denoise and (len(files) != 1 or not mask):
        raise UnetsegError("--denoise needs --mask and a single --input file")
    if mask and not denoise:
        raise UnetsegError("--mask is used with --denoise; give --denoise OUT.wav too")
    out = check_output_dir(output)
    outputs = [out / f"{f.stem}{ext}" for f in files for ext in (".png", ".json")] + [denoise]
    owned = [f.with_suffix(ext) for f in outputs[:-1:2] if written_by_us(f.with_suffix(".json"), "recording")
             for ext in (".png", ".json")]
    check_outputs(outputs, [*files, mask], overwrite, owned=owned + _denoised_by_us(denoise))
    written = []
    for f in files:
        info = audio_info(f)
        rate = cfg.sample_rate or info.sample_rate
        check_band(cfg, rate, str(f))
        kept = round(info.duration * rate) - cut.start_sample
        if cut.duration is not None:
            kept = min(kept, round(cut.duration * rate))
        check_spectrogram_memory(max(kept, 0), cfg, str(f), ", or cut it with --start-sample and --duration")
        y, sr = load_audio(f, cfg.sample_rate, cut.channel)
        check_not_silent(y, f)
        stop = len(y) if cut.duration is None else cut.start_sample + int(round(cut.duration * sr))
        y = y[cut.start_sample:stop]
        image, mapping = spectrogram_image(y, sr, cfg, cut.start_sample)
        if denoise:  # the mask checked before anything is written
            m = read_mask_raw(Path(mask))
            m = (m if m.ndim == 2 else m[..., 0]) > 127
            if m.shape != image.shape:
                raise UnetsegError(f"{mask}: mask is {m.shape[1]}x{m.shape[0]} but the spectrogram is "
                                   f"{image.shape[1]}x{image.shape[0]}")
        write_png(out / f"{f.stem}.png", image)
        write_json(out / f"{f.stem}.json", {"recording": str(f), **mapping.to_dict()})
        written.append(out / f"{f.stem}.png")
        print(f"{out / f.stem}.png: {image.shape[0]} x {image.shape[1]} ({len(y) / sr:.2f} s at {sr} Hz)")
        if denoise:
            write_wav(Path(denoise), masked_inverse(stft(y, cfg), m, cfg, sr), sr)
            print(f"denoised audio: {denoise}")
    return written


def write_wav(path: Path, y: Any, sr: int) -> None:
    """A mono float WAV, written atomically and tagged as ours."""
    import soundfile as sf

    def write(p: Path) -> None:
        with sf.SoundFile(str(p), "w", sr, 1, "FLOAT", format="WAV") as f:
            f.software = SOFTWARE
            f.write(y)

    atomic_write(path, write)


def _denoised_by_us(path: str | Path | None) -> list[Path]:
    """A denoised WAV an earlier ``audio spectrogram --denoise`` wrote (it carries our software tag)."""
    if not path or not Path(path).is_file():
        return []
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            return [Path(path)] if (f.software or "").startswith(SOFTWARE) else []
    except (RuntimeError, OSError):
        return []
