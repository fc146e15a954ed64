"""``kill -9`` in the middle of work: nothing half-written is left, and the rerun completes the same outputs
as an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import shared
from .test_reliability import _model

pytestmark = pytest.mark.slow  # run by make test-slow (and .ci/run), not by make test


def _start(argv: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "unetseg", "-q", *argv], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120,
               victim: Callable[[], int] | None = None) -> None:
    """SIGKILL ``proc`` (or the process ``victim()`` names, then wait for ``proc`` to end) as soon as
    ``ready()``; fail when it ends first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ready():
            if victim is None:
                proc.kill()
            else:
                os.kill(victim(), signal.SIGKILL)
            proc.communicate(timeout=300)
            return
        if proc.poll() is not None:
            raise AssertionError(f"finished before it could be killed: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.002)
    proc.kill()
    raise AssertionError("never reached the point to kill it")


def _run(argv: list[str], cwd: Path) -> None:
    proc = _start(argv, cwd)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()


def _files(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


def test_kill_during_predict_then_resume_gives_the_uninterrupted_outputs(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = tmp_path / "in"
    images.mkdir()
    for i in range(24):
        Image.fromarray(rng.integers(0, 255, (320, 384, 3), dtype=np.uint8)).save(images / f"im{i:02d}.png")
    model = _model(tmp_path, "pad", width=16, depth=4)
    argv = ["predict", "--model", str(model), "--input", str(images), "--backend", "torch", "--threads", "1",
            "--overlays", "--contours"]
    _run([*argv, "--output", "full"], tmp_path)
    out = tmp_path / "killed"
    proc = _start([*argv, "--output", str(out)], tmp_path)
    _kill_when(proc, lambda: len(list(out.glob("im*.png"))) >= 3)
    done = len(list(out.glob("im*.png")))
    assert 3 <= done < 24
    _run([*argv, "--output", str(out), "--resume"], tmp_path)
    full, resumed = _files(tmp_path / "full"), _files(out)
    full.pop("inference.json"), resumed.pop("inference.json")
    assert resumed == full  # same files, same bytes, no temporary file left


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

    _kill_when(proc, lambda: partial_files() >= 20)
    assert not (tmp_path / "b" / "finch").exists()  # only the hidden partial folder
    _run([*argv, "--output", "b/finch"], tmp_path)
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["finch"]  # the killed run's partial folder is gone
    assert _files(tmp_path / "b" / "finch") == _files(tmp_path / "a" / "finch")
