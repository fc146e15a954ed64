"""Tests of ``unetseg.core.distributed``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.fixtures import audio_model, file_bytes, kill_when, shared, tiny_model_file

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def torchrun(argv: list[str], cwd: Path, n: int = 2) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
                             "-m", "unetseg", "-q", *argv], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def single(argv: list[str], cwd: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "unetseg", "-q", *argv], cwd=cwd, env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out.decode()[-3000:]


def outputs(folder: Path) -> dict[str, bytes]:
    files = file_bytes(folder)
    files.pop("inference.json")
    return files


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def recordings(folder: Path, n: int, seconds: int, step: int) -> Path:
    """``n`` cuts of the spinetail recording, ``seconds`` long, ``step`` seconds apart."""
    y, sr = sf.read(shared("bird-audio") / "spinetail" / "spinetail.wav")
    folder.mkdir()
    for i in range(n):
        sf.write(folder / f"r{i}.wav", y[i * step * sr:(i * step + seconds) * sr], sr)
    return folder


def killed_worker(job: subprocess.Popen, ready: Callable[[], bool]) -> None:
    """SIGKILL one worker of a torchrun ``job`` once ``ready()``; the job then fails."""
    kill_when(job, ready, victim=lambda: children(job.pid)[-1])
    assert job.returncode != 0


def images(folder: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for i in range(n):  # an odd count: two processes share it unevenly
        Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(folder / f"im{i:02d}.png")
    return folder


@pytest.mark.slow
def test_predict_on_two_processes_gives_the_outputs_of_one(tmp_path: Path) -> None:
    model, inputs = tiny_model_file(tmp_path, "pad"), images(tmp_path / "in", 7)
    argv = ["predict", "--model", str(model), "--input", str(inputs), "--backend", "torch", "--contours"]
    single([*argv, "--output", "one", "--coco-results", "one.json"], tmp_path)
    finish(torchrun([*argv, "--output", "two", "--coco-results", "two.json"], tmp_path))
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")
    assert (tmp_path / "two.json").read_bytes() == (tmp_path / "one.json").read_bytes()


@pytest.mark.slow
def test_detect_on_two_processes_gives_the_outputs_of_one(tmp_path: Path) -> None:
    recs = recordings(tmp_path / "recs", 3, seconds=4, step=3)
    argv = ["audio", "detect", "--model", str(audio_model(tmp_path, bias=3.0)), "--input", str(recs), "--backend",
            "torch"]
    single([*argv, "--output", "one"], tmp_path)
    finish(torchrun([*argv, "--output", "two"], tmp_path))
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")
    combined = (tmp_path / "two" / "events.csv").read_text().splitlines()
    assert combined[0].endswith(",file") and {ln.rsplit(",", 1)[1] for ln in combined[1:]} == {"r0.wav", "r1.wav",
                                                                                                 "r2.wav"}


@pytest.mark.slow
def test_a_killed_process_then_resume_completes_the_same_outputs(tmp_path: Path) -> None:
    model, inputs = tiny_model_file(tmp_path, "pad", width=16, depth=4), images(tmp_path / "in", 31)
    argv = ["predict", "--model", str(model), "--input", str(inputs), "--backend", "torch", "--threads", "1"]
    single([*argv, "--output", "one"], tmp_path)
    job = torchrun([*argv, "--output", "two"], tmp_path)
    killed_worker(job, lambda: len(list((tmp_path / "two").glob("im*.png"))) >= 4)
    assert len(list((tmp_path / "two").glob("im*.png"))) < 31
    finish(torchrun([*argv, "--output", "two", "--resume"], tmp_path))
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")


@pytest.mark.slow
def test_two_process_training_validates_exactly_like_one_process(camvid: Path, tmp_path: Path) -> None:
    """DDP on CPU (gloo) through Lightning's own launcher: one run folder, and the validation metrics of
    the last epoch equal a single-process evaluate of the same model file on the same split."""
    import json

    from unetseg.evaluation.evaluate_split import evaluate
    from unetseg.inference import InferenceOptions
    from unetseg.models.modelfile import read_meta

    r = subprocess.run([sys.executable, "-m", "unetseg", "train", "--data", str(camvid), "--accelerator", "cpu",
                        "--devices", "2", "--epochs", "2", "--resize-mode", "pad", "--crop", "64",
                        "--arch", "classic", "--depth", "3", "--base-width", "8", "--batch-size", "4", "--no-plan",
                        "--no-progress", "--workers", "0", "--no-test", "--runs-dir", "runs"],
                       cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1, runs
    assert "time budget ended" not in r.stderr
    config = (runs[0] / "config.yaml").read_text()
    assert "# processes: 2; train.batch_size is per process" in config
    model = runs[0] / "weights" / "last.safetensors"
    trained = read_meta(model)["training"]
    assert trained["epoch"] == 2
    ev = evaluate(model, camvid, "valid", tmp_path / "ev", options=InferenceOptions(backend="torch"), figures=0)
    assert ev.metrics["images"] == 40
    # every valid pixel counted exactly once (no padded repeats, none missing) ...
    total = {name: sum(c["tp"] + c["fn"] for c in counts.values()) for name, counts in
             (("ddp", trained["counts"]), ("evaluate", ev.metrics["counts"]))}
    assert total["ddp"] == total["evaluate"] > 0
    # ... and predicted alike but for near-ties: the engine folds batch norm into the convolutions, which moves
    # logits by ~1e-6 (one pixel of 6.9 million flipped class in the run that was checked)
    for c, counts in trained["counts"].items():
        assert all(abs(counts[k] - ev.metrics["counts"][c][k]) <= 3 for k in counts), c
    # The scores are those of the summed counts (a near-tie pixel moves a score by ~1e-6 but never this rule).
    from unetseg.evaluation.pixel_scores import summarize

    classes = list(trained["counts"])
    summed = np.array([[trained["counts"][c][k] for k in ("tp", "fp", "tn", "fn")] for c in classes])
    expected = summarize(summed, classes, binary=False)
    for key in ("iou", "dice", "precision", "recall", "accuracy"):  # reported rounded to 6 decimals
        got, want = trained["metrics"][f"val_{key}"], expected[key]
        assert (got is None and want is None) or abs(got - want) <= 1e-6 + 1e-12, (key, got, want)
        if trained["counts"] == ev.metrics["counts"]:  # no near-tie flipped: evaluate scores the same
            assert got == ev.metrics[key], key
    rows = (runs[0] / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and json.loads(json.dumps(rows))  # one row per epoch, written once


@pytest.mark.slow
def test_a_killed_detect_process_then_resume_completes_the_same_tables(tmp_path: Path) -> None:
    recs = recordings(tmp_path / "recs", 10, seconds=8, step=1)
    argv = ["audio", "detect", "--model", str(audio_model(tmp_path, bias=3.0)), "--input", str(recs), "--backend",
            "torch", "--threads", "1", "--denoise", "den"]
    single([*argv[:-1], "one-den", "--output", "one"], tmp_path)
    job = torchrun([*argv, "--output", "two"], tmp_path)
    killed_worker(job, lambda: len(list((tmp_path / "two").glob("r*.selections.txt"))) >= 2)
    assert len(list((tmp_path / "two").glob("r*.selections.txt"))) < 10
    finish(torchrun([*argv, "--output", "two", "--resume"], tmp_path))
    assert outputs(tmp_path / "two") == outputs(tmp_path / "one")
    # denoised audio too, none half-written (samples compared: libsndfile stamps float WAVs with the time)
    den, ref = sorted((tmp_path / "den").iterdir()), sorted((tmp_path / "one-den").iterdir())
    assert [f.name for f in den] == [f.name for f in ref] and len(den) == 10
    for a, b in zip(den, ref, strict=True):
        assert np.array_equal(sf.read(a)[0], sf.read(b)[0]), a.name
