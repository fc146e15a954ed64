"""Tests of ``unetseg.core.output_folder``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures import file_bytes, kill_when, shared, tiny_model_file


def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "unetseg", "-q", *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _run(argv: list[str], cwd: Path) -> None:
    proc = _start(argv, cwd)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()


@pytest.mark.slow
def test_kill_during_predict_then_resume_gives_the_uninterrupted_outputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = tmp_path / "in"
    images.mkdir()
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (320, 384, 3), dtype=np.uint8)).save(images / f"im{i:02d}.png")
    model = tiny_model_file(tmp_path, "pad", width=16, depth=4)
    argv = ["predict", "--model", str(model), "--input", str(images), "--backend", "torch", "--threads", "1",
            "--overlays", "--contours"]
    _run([*argv, "--output", "full"], tmp_path)
    out = tmp_path / "killed"
    proc = _start([*argv, "--output", str(out)], tmp_path)
    kill_when(proc, lambda: len(list(out.glob("im*.png"))) >= 3)
    done = len(list(out.glob("im*.png")))
    assert 3 <= done < 24
    _run([*argv, "--output", str(out), "--resume"], tmp_path)
    full, resumed = file_bytes(tmp_path / "full"), file_bytes(out)
    full.pop("inference.json"), resumed.pop("inference.json")
    assert resumed == full  # same files, same bytes, no temporary file left


@pytest.mark.slow
def test_kill_during_audio_dataset_then_rerun_gives_the_uninterrupted_dataset(tmp_path: Path) -> None:
    finch = shared("bird-audio") / "bengalese-finch-gy6or6"
    noise = shared("bird-audio") / "spinetail" / "spinetail.wav"
    argv = ["audio", "dataset", "--audio", str(finch / "wav"), "--annotations", str(finch / "annotations_generic.csv"),
            "--noise", str(noise), "--snrs", "10,0"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _run([*argv, "--output", "a/finch"], tmp_path)
    proc = _start([*argv, "--output", "b/finch"], tmp_path)

    def partial_files() -> int:
        return sum(len(list(p.rglob("*.png"))) for p in (tmp_path / "b").glob(".finch.partial-*"))

    kill_when(proc, lambda: partial_files() >= 20)
    assert not (tmp_path / "b" / "finch").exists()  # only the hidden partial folder
    _run([*argv, "--output", "b/finch"], tmp_path)
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["finch"]  # the killed run's partial folder is gone
    assert file_bytes(tmp_path / "b" / "finch") == file_bytes(tmp_path / "a" / "finch")
