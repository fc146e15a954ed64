"""Tests of ``unetseg.core.guard``."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.fixtures import check_cases, cli, crafted_model, set_field

# Each case: the command, and the user's paths whose content must not change. Every case must exit 2 with one
# ``error:`` line naming what is wrong.
LOSS = {
    "spectrogram denoise over its input": (
        ["audio", "spectrogram", "--input", "rec.wav", "--mask", "mask.png", "--denoise", "rec.wav", "--output", "s2"],
        ["rec.wav"], "is also an input"),
    "audio evaluate over its reference": (
        ["audio", "evaluate", "--reference", "truth.txt", "--estimate", "est.txt", "--output", "truth.txt"],
        ["truth.txt"], "is also an input"),
    "audio evaluate over its reference with --overwrite": (
        ["audio", "evaluate", "--reference", "truth.txt", "--estimate", "est.txt", "--output", "truth.txt",
         "--overwrite"], ["truth.txt"], "refused even with --overwrite"),
    "evaluate into an earlier evaluation": (
        ["evaluate", "--model", "pad.safetensors", "--data", "data", "--output", "evaluated", "--backend", "torch"],
        ["evaluated"], "already exists"),
    "spectrogram twice into one folder": (
        ["audio", "spectrogram", "--input", "rec.wav", "--output", "spec"], ["spec"], "already exists"),
    "export over its model with --overwrite": (
        ["export", "--model", "pad.safetensors", "--output", "pad.safetensors", "--overwrite"], ["pad.safetensors"],
        "is also an input"),
    "predict masks over the input images": (
        ["predict", "--model", "pad.safetensors", "--input", "imgs", "--output", "imgs", "--overwrite"], ["imgs"],
        "lies inside the input folder imgs"),
    "predict coco results over the coco json": (
        ["predict", "--model", "pad.safetensors", "--input", "imgs", "--output", "p1", "--coco-json", "truth.txt",
         "--coco-results", "truth.txt", "--overwrite"], ["truth.txt"], "is also an input"),
    "detect denoise over the recording": (
        ["audio", "detect", "--model", "birds.safetensors", "--input", "rec.wav", "--output", "d1", "--denoise",
         "rec.wav", "--overwrite"], ["rec.wav"], "is also an input"),
    "detect into the model file": (
        ["audio", "detect", "--model", "birds.safetensors", "--input", "rec.wav", "--output", "birds.safetensors"],
        ["birds.safetensors"], "not a folder"),
    "audio dataset into the recordings": (
        ["audio", "dataset", "--audio", "recs", "--annotations", "truth.txt", "--output", "recs"], ["recs"],
        "not empty"),
    "train run name escaping the runs folder": (
        ["train", "--data", "data", "--name", "../escaped_run", "--runs-dir", "runs", "--epochs", "1"], ["data"],
        "plain folder name"),
    "train absolute run name": (
        ["train", "--data", "data", "--name", "/tmp/escaped_run", "--runs-dir", "runs", "--epochs", "1"], ["data"],
        "plain folder name"),
}


OPTIONS = {
    "predict threshold above 1": (["predict", "--model", "pad.safetensors", "--input", "imgs", "--output", "o",
                                   "--threshold", "1.5"], "--threshold"),
    "predict threshold nan": (["predict", "--model", "pad.safetensors", "--input", "imgs", "--output", "o",
                               "--threshold", "nan"], "finite"),
    "evaluate threshold 0": (["evaluate", "--model", "pad.safetensors", "--data", "data", "--threshold", "0"],
                             "--threshold"),
    "detect threshold nan": (["audio", "detect", "--model", "birds.safetensors", "--input", "rec.wav", "--output", "o",
                              "--threshold", "nan"], "finite"),
    "detect min-duration nan": (["audio", "detect", "--model", "birds.safetensors", "--input", "rec.wav", "--output",
                                 "o", "--min-duration", "nan"], "--min-duration"),
    "predict min-size -5": (["predict", "--model", "pad.safetensors", "--input", "imgs", "--output", "o",
                             "--min-size", "-5"], "--min-size"),
    "predict open 100000": (["predict", "--model", "pad.safetensors", "--input", "imgs", "--output", "o", "--open",
                             "100000"], "--open"),
    "train lr inf": (["train", "--data", "data", "--lr", "inf", "--runs-dir", "runs"], "train.lr"),
    "train loss foo": (["train", "--data", "data", "--loss", "foo", "--runs-dir", "runs", "--no-progress"], "foo"),
    "train seed 1e20": (["train", "--data", "data", "--seed", "1e20", "--runs-dir", "runs"], "train.seed"),
    "train workers -1 too few": (["train", "--data", "data", "--workers", "-2", "--runs-dir", "runs"], "data.workers"),
    "predict threads 10000": (["predict", "--model", "pad.safetensors", "--input", "imgs", "--output", "o",
                               "--threads", "10000"], "--threads"),
    "predict workers -1": (["predict", "--model", "pad.safetensors", "--input", "imgs", "--output", "o",
                            "--workers", "-1"], "--workers"),
    "evaluate seed 1e20": (["evaluate", "--model", "pad.safetensors", "--data", "data", "--seed", "1e20"], "--seed"),
    "evaluate device cuda": (["evaluate", "--model", "pad.safetensors", "--data", "data", "--device", "cuda",
                              "--output", "ev-cuda"], "cuda"),
    "dataset window 0": (["audio", "dataset", "--audio", "recs", "--annotations", "truth.txt", "--output", "ds",
                          "--window", "0"], "--window"),
    "dataset overlap = window": (["audio", "dataset", "--audio", "recs", "--annotations", "truth.txt", "--output",
                                  "ds", "--window", "64", "--overlap", "64"], "--overlap"),
    "dataset overlap negative": (["audio", "dataset", "--audio", "recs", "--annotations", "truth.txt", "--output",
                                  "ds", "--overlap", "-1"], "--overlap"),
    "detect overlap >= window": (["audio", "detect", "--model", "birds.safetensors", "--input", "rec.wav", "--output",
                                  "o", "--window", "64", "--overlap", "64"], "--overlap"),
    "spectrogram start-sample negative": (["audio", "spectrogram", "--input", "rec.wav", "--output", "o",
                                           "--start-sample", "-1"], "--start-sample"),
    "spectrogram duration negative": (["audio", "spectrogram", "--input", "rec.wav", "--output", "o", "--duration",
                                       "-1"], "--duration"),
    "spectrogram db-floor 0": (["audio", "spectrogram", "--input", "rec.wav", "--output", "o", "--db-floor", "0"],
                               "--db-floor"),
    "spectrogram hop 1 n-fft 4096": (["audio", "spectrogram", "--input", "rec.wav", "--output", "o", "--hop", "1",
                                      "--n-fft", "4096"], "memory budget"),
    "detect block-seconds nan": (["audio", "detect", "--model", "birds.safetensors", "--input", "rec.wav", "--output",
                                  "o", "--block-seconds", "nan"], "--block-seconds"),
    "detect block-seconds inf": (["audio", "detect", "--model", "birds.safetensors", "--input", "rec.wav", "--output",
                                  "o", "--block-seconds", "inf"], "--block-seconds"),
    "detect block-seconds 100000": (["audio", "detect", "--model", "birds.safetensors", "--input", "rec.wav",
                                     "--output", "o", "--block-seconds", "100000"], "--block-seconds"),
    "predict 10000x10000 with overlays and probabilities": (["predict", "--model", "pad.safetensors", "--input",
                                                             "huge", "--output", "o", "--overlays", "--probabilities",
                                                             "--backend", "torch"], "memory budget"),
    "detect on a recording with no frame": (["audio", "detect", "--model", "birds.safetensors", "--input",
                                             "tiny.wav", "--output", "o"], "shorter than one STFT window"),
    "predict backend foo": (["predict", "--model", "pad.safetensors", "--input", "imgs", "--output", "o", "--backend",
                             "foo"], "--backend"),
    "export format foo": (["export", "--model", "pad.safetensors", "--format", "foo"], "--format"),
    "unknown flag": (["predict", "--model", "pad.safetensors", "--input", "imgs", "--output", "o", "--colour"],
                     "--colour"),
}


@pytest.mark.slow
def test_no_command_loses_a_users_file(work: Path) -> None:
    check_cases(work, {name: (argv, needle, [work / p for p in keep]) for name, (argv, keep, needle) in LOSS.items()})
    assert not (work / "escaped_run").exists() and not Path("/tmp/escaped_run").exists()


@pytest.mark.slow
def test_every_option_is_bounded_before_work(work: Path) -> None:
    keep = [work / "data", work / "imgs"]
    check_cases(work, {name: (argv, needle, keep) for name, (argv, needle) in OPTIONS.items()})
    for folder in ("runs", "o", "ds", "ev-cuda"):  # refused before any folder was made
        assert not (work / folder).exists(), folder


def _nan_weights(_meta: dict, tensors: dict) -> None:
    for t in tensors.values():
        if t.is_floating_point():
            t.fill_(float("nan"))


MODEL_FILES = {
    "unknown arch": (set_field("model.arch", "transformer9000"), "model.arch"),
    "code-like arch": (set_field("model.arch", "__import__('os').system('touch pwned')"), "model.arch"),
    "wide classic U-Net (2 GB of weights)": (set_field("model.base_width", 256), "weights do not match"),
    "huge smp encoder": (lambda m, t: (m["model"].update(arch="unet", encoder="resnext101_32x48d"),
                                       m["input"].update(divisor=32)), "weights do not match"),
    "audio bad window name": (set_field("spectrogram.window", "nope"), "window"),
    "audio n_fft 65536 hop 1": (lambda m, t: m["spectrogram"].update(n_fft=65536, hop_length=1), "memory budget"),
    "audio n_mels 1e7": (lambda m, t: m["spectrogram"].update(axis="mel", n_mels=10_000_000), "n_mels"),
    "json nested 200000 deep": ("[" * 200_000 + "]" * 200_000, "nested"),
    "all-NaN weights": (_nan_weights, "NaN"),
}


@pytest.mark.slow
def test_crafted_model_files_are_refused_alike_by_info_and_every_command(work: Path) -> None:
    cases = {}
    for name, (change, needle) in MODEL_FILES.items():
        path = str(crafted_model(work, name.replace(" ", "_").replace("(", "").replace(")", ""), change))
        if name.startswith("audio"):
            run = ["audio", "detect", "--model", path, "--input", "rec4.wav", "--output", f"o-{name}"]
        else:
            run = ["predict", "--model", path, "--input", "imgs", "--output", f"o-{name}"]
        if name != "audio n_fft 65536 hop 1":  # info reads no audio
            cases[f"info: {name}"] = (["info", path], needle, [work / "imgs"])
        cases[f"run: {name}"] = (run, needle, [work / "imgs"])
    check_cases(work, cases)
    assert not (work / "pwned").exists()
    assert not list(work.glob("o-*"))


@pytest.mark.slow
def test_temporary_files_of_users_survive_and_a_locked_folder_refuses_a_second_writer(work: Path) -> None:
    from unetseg.core.errors import UnetsegError
    from unetseg.core.guard import folder_lock, remove_stale_temps, temp_prefix

    folder = work / "locked"
    folder.mkdir()
    mine = [folder / ".notes.tmp.txt", folder / ".mydata.partial", folder / ".x.unetseg-notanumber.tmp"]
    for f in mine:
        f.write_text("user")
    ours_alive = folder / f"{temp_prefix(folder / 'a.png')}abc.tmp.png"  # this process: still running
    ours_alive.write_text("half")
    assert remove_stale_temps([folder]) == 0 and all(f.exists() for f in [*mine, ours_alive])
    with folder_lock(folder):
        code, err, _ = cli(["predict", "--model", "pad.safetensors", "--input", "imgs", "--output", str(folder),
                            "--resume"], work)
        assert code == 2 and "another unetseg process" in err and f"pid {os.getpid()}" in err, err
        with pytest.raises(UnetsegError, match="another unetseg process"), folder_lock(folder):
            pass
    assert not (folder / ".unetseg.lock").exists()


@pytest.mark.slow
def test_nan_samples_short_wavs_bands_above_nyquist_and_unknown_labels(work: Path, tmp_path: Path, caplog) -> None:
    from unetseg.audio.annotations import Event, check_labels, check_within
    from unetseg.audio.recordings import load_audio
    from unetseg.core.errors import UnetsegError

    y, sr = sf.read(work / "rec.wav", dtype="float32")
    y[1000:2152] = np.nan
    sf.write(tmp_path / "nan.wav", y, sr, subtype="FLOAT")
    code, err, _ = cli(["audio", "detect", "--model", str(work / "birds.safetensors"), "--input",
                        str(tmp_path / "nan.wav"), "--output", str(tmp_path / "d"), "--denoise",
                        str(tmp_path / "den.wav"), "--backend", "torch"], work)
    assert code == 0, err
    assert "1152 NaN or infinite samples were read as silence" in err
    assert np.isfinite(sf.read(tmp_path / "den.wav")[0]).all()
    data = (tmp_path / "nan.wav").read_bytes()
    (tmp_path / "short.wav").write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING"):
        load_audio(tmp_path / "short.wav")
    assert "the header promises 44100 samples" in caplog.text and "cut short" in caplog.text
    with pytest.raises(UnetsegError, match="above the recording's Nyquist"):
        check_within([Event(0.1, 0.2, 5000.0, 15000.0, "call")], 2.0, 11025.0, "t.txt", 11025.0)
    caplog.clear()
    with caplog.at_level("WARNING"):
        check_within([Event(0.1, 0.2, 5000.0, 15000.0, "call")], 2.0, 11025.0, "t.txt", 22050.0)
        check_labels([Event(0.1, 0.2, label="sparow"), Event(0.3, 0.4, label="sparrow"),
                      Event(0.5, 0.6, label="sparow")],
                     ["sparrow"], "t.txt")
    assert "cut there" in caplog.text and "'sparow' (2)" in caplog.text


@pytest.mark.slow
def test_sigterm_leaves_nothing_half_written(work: Path, tmp_path: Path) -> None:
    import signal
    import time

    sr = 22050
    long = (0.05 * np.random.default_rng(1).standard_normal(600 * sr)).astype(np.float32)
    sf.write(tmp_path / "long.wav", long, sr, subtype="FLOAT")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "unetseg", "audio", "detect", "--model",
                             str(work / "birds.safetensors"), "--input", str(tmp_path / "long.wav"), "--output",
                             str(tmp_path / "d"), "--denoise", str(tmp_path / "den.wav"), "--backend", "torch"],
                            env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(tmp_path.glob(".den.wav.*")):
        time.sleep(0.1)
    assert list(tmp_path.glob(".den.wav.*")), "the denoised audio never started"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1].startswith("terminated"), err
    assert not list(tmp_path.glob(".*")) and not (tmp_path / "den.wav").exists()
    assert not (tmp_path / "d" / "long.selections.txt").exists()


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_leaves_no_half_written_file(work: Path, tmp_path: Path) -> None:
    import signal

    def small_files() -> None:  # every file may grow to 3 kB: the overlays cannot be written
        resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "UNETSEG_CACHE": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "unetseg", "predict", "--model", str(work / "pad.safetensors"),
                        "--input", str(work / "imgs"), "--output", str(tmp_path / "p"), "--overlays", "--backend",
                        "torch"], env=env, capture_output=True, text=True, timeout=180, preexec_fn=small_files)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and "File too large" in lines[0], \
        r.stderr
    assert not [f for f in (tmp_path / "p").rglob(".*") if f.name != ".unetseg.lock"]  # no temporary file left


def test_the_output_plan_is_checked_in_time_linear_in_the_files(tmp_path: Path, monkeypatch) -> None:
    """A folder of N images and its N outputs cost O(N) stats, not N x N (10,000 images were 10^8), and an output
    that is an input by another path (a hard link) is still refused."""
    from unetseg.core.errors import UnetsegError
    from unetseg.core.guard import check_outputs

    n = 400
    images = tmp_path / "images"
    images.mkdir()
    inputs = [images / f"{i:04d}.png" for i in range(n)]
    for p in inputs:
        p.write_bytes(b"x")
    outputs = [tmp_path / "out" / f"{i:04d}.png" for i in range(n)]
    calls = [0]
    real = os.stat

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(os, "stat", counted)
    check_outputs(outputs, inputs)
    monkeypatch.setattr(os, "stat", real)
    assert calls[0] < 20 * n, calls[0]
    link = tmp_path / "link.png"
    os.link(inputs[7], link)
    with pytest.raises(UnetsegError, match="is also an input"):
        check_outputs([link], inputs)
