"""Tests of ``unetseg.audio.spectrogram_plan``: the spectrogram chosen from the recordings and their boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from PIL import Image

from tests.fixtures import assert_one_line_error, run
from unetseg.audio.annotations import Event, format_raven
from unetseg.audio.spectrogram_plan import AutoSpectrogram, plan_spectrogram

BAT_RATE = 384_000


@pytest.fixture(autouse=True)
def no_prior(tmp_path: Path, monkeypatch) -> None:
    """The plan fitted to the data, as on an install without the built-in prior (a test that wants the prior's
    spectrogram for few boxes installs one)."""
    from unetseg.audio import settings

    monkeypatch.setattr(settings, "PRIOR_FILE", tmp_path / "no-prior.safetensors")


def _bats(folder: Path, calls: int = 8) -> tuple[Path, list[Event]]:
    """A 384 kHz recording of noise with ``calls`` 2 ms FM sweeps from 60 to 40 kHz, and their boxes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    y = 0.005 * rng.standard_normal(BAT_RATE)  # 1 s
    events = []
    for k in range(calls):
        a = 0.05 + 0.11 * k
        t = np.arange(int(0.002 * BAT_RATE)) / BAT_RATE
        sweep = np.sin(2 * np.pi * (60_000 * t - 0.5 * (20_000 / 0.002) * t**2))
        start = int(a * BAT_RATE)
        y[start:start + len(t)] += 0.5 * sweep * np.hanning(len(t))
        events.append(Event(a, a + 0.002, 40_000.0, 60_000.0, "bat"))
    wav = folder / "bats.wav"
    sf.write(wav, y.astype(np.float32), BAT_RATE)
    (folder / "bats.selections.txt").write_text(format_raven(events))
    return wav, events


def test_bats_keep_their_rate_and_get_columns_and_rows_enough(tmp_path: Path) -> None:
    wav, events = _bats(tmp_path)
    cfg, choices = plan_spectrogram({wav: events}, {wav: BAT_RATE}, AutoSpectrogram())
    assert cfg.sample_rate is None  # the file's own rate: the boxes reach 60 kHz
    assert 0.002 * BAT_RATE / cfg.hop_length >= 8  # a 2 ms call spans at least 8 columns
    assert 20_000 / (BAT_RATE / cfg.n_fft) >= 3  # the 20 kHz band spans at least 3 rows
    assert cfg.n_fft >= cfg.hop_length and cfg.fmin < 40_000 < 60_000 < cfg.fmax <= BAT_RATE / 2
    reasons = {c.key: c.reason for c in choices}
    assert "60.0 kHz" in reasons["sample_rate"] and "2.0 ms" in reasons["hop_length"]
    fixed, _ = plan_spectrogram({wav: events}, {wav: BAT_RATE}, AutoSpectrogram({"n_fft": 256}))
    assert fixed.n_fft == 256  # a setting given as a flag is kept


def test_birds_below_11_khz_stay_at_22_khz() -> None:
    calls = [Event(1.0 + k, 1.1 + k, 2000.0, 5000.0, "bird") for k in range(5)]
    cfg, choices = plan_spectrogram({Path("a.wav"): calls}, {Path("a.wav"): 44100}, AutoSpectrogram())
    assert cfg.sample_rate == 22050 and cfg.hop_length == 256 and cfg.n_fft >= 256
    assert (cfg.fmin, cfg.fmax) == (1600.0, 6000.0)
    assert [c.key for c in choices] == ["sample_rate", "hop_length", "n_fft", "fmin", "fmax"]


def test_audio_dataset_with_the_auto_preset_on_bat_calls(tmp_path: Path, capsys) -> None:
    wav, events = _bats(tmp_path / "rec")
    code, _, err = run(["audio", "dataset", "--audio", str(wav), "--output", str(tmp_path / "plain"),
                        "--window", "32", "--overlap", "8"], capsys)
    assert_one_line_error(code, err, "above the spectrogram's top", "--sample-rate 0", "--preset auto")
    code, out, err = run(["audio", "dataset", "--audio", str(wav), "--output", str(tmp_path / "ds"), "--preset",
                          "auto", "--window", "64", "--overlap", "16"], capsys)
    assert code == 0, err
    plan = json.loads((tmp_path / "ds" / "spectrogram_plan.json").read_text())
    assert plan["sample_rate"]["value"] is None and "kHz" in plan["sample_rate"]["reason"]
    spectrogram = yaml.safe_load((tmp_path / "ds" / "dataset.yaml").read_text())["spectrogram"]
    assert spectrogram["hop_length"] == plan["hop_length"]["value"] and spectrogram["sample_rate"] is None
    widths = []
    for mask in sorted((tmp_path / "ds").glob("*/masks/*.png")):
        on = (np.asarray(Image.open(mask)) > 0).any(axis=0)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(int), [0]])))
        widths += [b - a for a, b in zip(edges[::2], edges[1::2], strict=True) if a > 0 and b < len(on)]
    assert widths and min(widths) >= 8  # every call whole in a window spans at least 8 columns


def test_few_boxes_get_the_call_priors_spectrogram(tmp_path: Path, monkeypatch) -> None:
    from unetseg.audio import settings
    from unetseg.audio.spectrogram import PRESETS
    from unetseg.audio.spectrogram_plan import FEW_BOXES

    wav, events = _bats(tmp_path)
    monkeypatch.setattr(settings, "PRIOR_FILE", tmp_path / "bats.wav")  # a prior is installed
    cfg, choices = plan_spectrogram({wav: events}, {wav: BAT_RATE}, AutoSpectrogram())
    assert cfg == PRESETS["prior"] and len(events) < FEW_BOXES
    assert all("8 boxes" in c.reason and "prior" in c.reason for c in choices)
    many = [Event(0.01 * k, 0.01 * k + 0.002, 40_000.0, 60_000.0, "bat") for k in range(FEW_BOXES)]
    assert plan_spectrogram({wav: many}, {wav: BAT_RATE}, AutoSpectrogram())[0] != PRESETS["prior"]
    assert plan_spectrogram({wav: events}, {wav: BAT_RATE}, AutoSpectrogram({"n_fft": 256}))[0].n_fft == 256
    times = [Event(e.begin, e.end, None, None, "bat") for e in events]  # time-only labels train from scratch
    assert plan_spectrogram({wav: times}, {wav: BAT_RATE}, AutoSpectrogram())[0] != PRESETS["prior"]
    monkeypatch.setattr(settings, "PRIOR_FILE", tmp_path / "absent.safetensors")
    assert plan_spectrogram({wav: events}, {wav: BAT_RATE}, AutoSpectrogram())[0] != PRESETS["prior"]
