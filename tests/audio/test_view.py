"""Tests of ``unetseg.audio.view``."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf


def test_sf_reads_clip(tmp_path: Path) -> None:
    """A clip is read from its span only, at the file's own rate, and band-passed."""
    from unetseg.audio.view import clip_wav

    sr = 44100
    t = np.arange(2 * sr) / sr
    y = 0.3 * np.sin(2 * np.pi * 500 * t) + 0.3 * np.sin(2 * np.pi * 6000 * t)
    sf.write(tmp_path / "two.wav", y, sr)
    out, rate = sf.read(io.BytesIO(clip_wav(tmp_path / "two.wav", 0.5, 1.5, 4000, 8000)))
    spectrum = np.abs(np.fft.rfft(out))
    freqs = np.fft.rfftfreq(len(out), 1 / rate)
    assert rate == sr and len(out) == sr
    assert spectrum[np.argmin(abs(freqs - 6000))] > 100 * spectrum[np.argmin(abs(freqs - 500))]


def test_a_tile_is_the_models_image_of_its_span_whatever_the_chunks(tmp_path: Path) -> None:
    from unetseg.audio.recordings import load_audio
    from unetseg.audio.spectrogram import SpectrogramConfig, spectrogram_image
    from unetseg.audio.view import spectrogram_tile

    path = tmp_path / "two.wav"
    t = np.arange(3 * 44100) / 44100
    sf.write(path, 0.3 * np.sin(2 * np.pi * 3000 * t) * ((t % 0.5) < 0.05), 44100)
    cfg = SpectrogramConfig()  # resamples to 22,050 Hz
    whole, _ = spectrogram_image(load_audio(path, 22050)[0], 22050, cfg)
    hop, win, c0, width = cfg.hop_length, cfg.win, 100, 200
    begin = (c0 * hop + win / 2) / 22050 - 0.5 * hop / 22050  # pixel x shows column c0 + x
    tile = spectrogram_tile(path, cfg, begin, width * hop / 22050, width)
    assert tile.shape == (whole.shape[0], width)
    assert np.abs(tile.astype(int) - whole[:, c0:c0 + width]).max() <= 2  # resampled per span: edges differ a hair
    chunked = spectrogram_tile(path, cfg, begin, width * hop / 22050, width, chunk=37)  # each chunk resampled
    assert np.abs(chunked.astype(int) - tile).max() <= 1 and (chunked != tile).mean() < 0.001
    wide = spectrogram_tile(path, cfg, 0.0, 4.0, 100)  # 4 s in 100 px: the loudest column of each pixel
    assert wide[:, 76:].max() == 0 and wide.max() >= whole.max() - 2  # black past the 3 s end; calls kept
