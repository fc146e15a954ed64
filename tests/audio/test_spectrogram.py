"""Tests of ``unetseg.audio.spectrogram``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.fixtures import run, shared
from unetseg.audio.event_scores import sdr
from unetseg.audio.recordings import audio_info, load_audio
from unetseg.audio.spectrogram import SpectrogramMapping, preset, spectrogram_image


@pytest.fixture
def bsd() -> Path:
    return shared("birdsounds-denoising-example")


def test_birdsoundsdenoising_image_and_denoised_audio_reproduced(bsd: Path, tmp_path: Path, capsys) -> None:
    """Our image of XC41136.wav matches the dataset's XC41136.png, and masking our STFT with
    XC41136_mask.png gives the dataset's XC41136_denoised.wav. The dataset's MP3 decoder starts 528
    samples after libsndfile's (see shared/notes); 3032 frames span 194,112 samples = 4.044 s."""
    assert audio_info(bsd / "XC41136.wav").format == "MP3"  # an MP3 stream named .wav, read by content
    code, _, err = run(["audio", "spectrogram", "--input", str(bsd / "XC41136.wav"), "--output", str(tmp_path),
                        "--preset", "birdsoundsdenoising", "--start-sample", "528", "--duration", "4.044",
                        "--mask", str(bsd / "XC41136_mask.png"), "--denoise", str(tmp_path / "den.wav")], capsys)
    assert code == 0, err
    ours = np.asarray(Image.open(tmp_path / "XC41136.png"), dtype=np.float64)
    theirs = np.asarray(Image.open(bsd / "XC41136.png").convert("L"), dtype=np.float64)
    assert ours.shape == theirs.shape == (1024, 3032)
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] >= 0.99
    assert np.abs(ours - theirs).mean() < 0.5  # grey levels
    ref, sr = sf.read(bsd / "XC41136_denoised.wav")
    den, sr2 = sf.read(tmp_path / "den.wav")
    assert sr == sr2 == 48000 and len(den) == len(ref) == 194112
    # The measure: correlation at lag 0 and the SNR of our audio against theirs.
    assert np.corrcoef(den, ref)[0, 1] >= 0.999
    assert sdr(ref, den) >= 30.0
    mapping = json.loads((tmp_path / "XC41136.json").read_text())
    assert mapping["first_column_s"] == pytest.approx((528 + 64) / 48000)
    assert mapping["row_hz"][0] == pytest.approx(24000 - 46.875) and mapping["row_hz"][511] == 0


def test_spectrogram_mapping_and_mel_axis(birds: Path) -> None:
    y, sr = load_audio(birds / "spinetail" / "spinetail.wav", 22050)
    image, mapping = spectrogram_image(y[: sr * 2], sr, preset("default"))
    assert image.shape[0] == 256 and image.dtype == np.uint8
    assert mapping.row_hz[0] > mapping.row_hz[-1] == 0  # high frequencies on top
    assert mapping.column_time(0) == pytest.approx(256 / sr)
    mel, mel_map = spectrogram_image(y[: sr * 2], sr, preset("default", axis="mel", n_mels=64, fmax=11025.0))
    assert mel.shape == (64, image.shape[1]) and mel_map.row_hz[0] > mel_map.row_hz[-1]


def test_mapping_round_trips_through_json() -> None:
    m = SpectrogramMapping(22050, 1280, 128, 512, [100.0, 50.0, 0.0], preset("default").to_dict())
    assert SpectrogramMapping.from_dict(json.loads(json.dumps(m.to_dict()))) == m
