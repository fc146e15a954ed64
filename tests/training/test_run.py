"""Tests of ``unetseg.training.run``."""

from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.fixtures import TINY, assert_one_line_error, run, write_binary_dataset
from unetseg.core.config import Config


@pytest.mark.slow
def test_binary_train_evaluate_predict_and_resume(binary_data: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    code, out, err = run(["train", "--data", str(binary_data), "--size", "64", "--epochs", "2", "--lr", "3e-3",
                          "--runs-dir", str(runs), "--name", "calls", *TINY], capsys)
    assert code == 0, err
    run_dir = runs / "calls"
    for name in ("config.yaml", "dataset.json", "metrics.csv", "history.png", "weights/best.safetensors",
                 "weights/last.safetensors", "weights/last.ckpt", "val_predictions/epoch_002.png",
                 "test/metrics.json", "test/per_image.csv"):
        assert (run_dir / name).exists(), name
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    with (run_dir / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    columns = {"train_loss", "val_loss", "val_iou", "val_dice", "val_precision", "val_recall", "val_accuracy"}
    assert columns <= set(rows[0])

    # A second run never overwrites the first.
    code, _, err = run(["train", "--data", str(binary_data), "--size", "64", "--epochs", "1", "--runs-dir",
                        str(runs), "--name", "calls", "--no-test", *TINY], capsys)
    assert code == 0, err
    assert (runs / "calls-2" / "weights" / "best.safetensors").exists()

    # Resume continues the first run from its last checkpoint.
    code, out, err = run(["train", "--resume", str(run_dir), "--epochs", "3", "--no-test"], capsys)
    assert code == 0, err
    with (run_dir / "metrics.csv").open() as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1", "2", "3"]

    model = run_dir / "weights" / "best.safetensors"
    code, out, err = run(["evaluate", "--model", str(model), "--data", str(binary_data), "--split", "test",
                          "--output", str(tmp_path / "eval")], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 6 and 0 <= metrics["iou"] <= 1
    assert {"iou", "dice", "precision", "recall", "accuracy", "per_class"} <= set(metrics)
    assert len(list((tmp_path / "eval" / "figures").glob("*.png"))) == 6
    assert "IoU" in out

    # Predict at the original size, from a folder of images of another size.
    bigger = tmp_path / "bigger"
    bigger.mkdir()
    for p in sorted((binary_data / "test" / "images").glob("*.png"))[:2]:
        cv2.imwrite(str(bigger / p.name), cv2.resize(cv2.imread(str(p)), (97, 75)))
    out_dir = tmp_path / "pred"
    code, out, err = run(["predict", "--model", str(model), "--input", str(bigger), "--output", str(out_dir),
                          "--overlays", "--probabilities", "--contours", "--min-size", "3", "--fill-holes"], capsys)
    assert code == 0, err
    masks = sorted(out_dir.glob("*.png"))
    assert len(masks) == 2
    for m in masks:
        array = np.array(Image.open(m))
        assert array.shape == (75, 97) and set(np.unique(array)) <= {0, 255}
        assert (out_dir / "overlays" / m.name).exists() and (out_dir / "probabilities" / m.name).exists()
        assert "objects" in json.loads((out_dir / "contours" / f"{m.stem}.json").read_text())

    # Existing outputs are kept unless --overwrite.
    code, _, err = run(["predict", "--model", str(model), "--input", str(bigger), "--output", str(out_dir)],
                       capsys)
    assert_one_line_error(code, err, "already exists", "--overwrite")


@pytest.mark.slow
def test_sigterm_during_train_saves_a_resumable_state(tmp_path: Path) -> None:
    """SIGTERM inside the first epoch (before any checkpoint): exit 143 with one ``terminated:`` line, the
    state in ``weights/last.ckpt``, and ``train --resume`` finishes the run."""
    import signal
    import subprocess
    import sys
    import time

    data = write_binary_dataset(tmp_path / "data", {"train": 48, "valid": 4}, size=64)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "unetseg", "-q", "train", "--data", str(data), "--runs-dir", str(tmp_path / "runs"),
            "--name", "t", "--no-plan", "--epochs", "500", "--batch-size", "2", "--base-width", "8", "--workers", "0",
            "--no-progress", "--no-test"]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (tmp_path / "runs" / "t" / "config.yaml").exists():
        time.sleep(0.05)
    assert (tmp_path / "runs" / "t" / "config.yaml").exists(), "training never started"
    time.sleep(1.0)  # inside the first epoch of 24 steps
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert proc.returncode == 143 and lines and lines[-1].startswith("terminated:"), err
    assert (tmp_path / "runs" / "t" / "weights" / "last.ckpt").is_file()
    assert not list((tmp_path / "runs" / "t" / "weights").glob(".*tmp*"))
    resumed = subprocess.run([sys.executable, "-m", "unetseg", "-q", "train", "--resume", str(tmp_path / "runs" / "t"),
                              "--epochs", "1", "--no-test"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "runs" / "t" / "weights" / "best.safetensors").is_file()


class _Payload:
    def __reduce__(self) -> tuple:
        return (Path.write_text, (Path("/tmp/unetseg-pwned"), "ran"))


def test_pickle_as_last_ckpt_is_refused_in_one_line_and_never_runs(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "weights").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(Config().to_yaml())
    (run_dir / "weights" / "last.ckpt").write_bytes(pickle.dumps({"state_dict": _Payload(), "epoch": 1}))
    Path("/tmp/unetseg-pwned").unlink(missing_ok=True)
    code, _, err = run(["train", "--resume", str(run_dir)], capsys)
    assert_one_line_error(code, err, "last.ckpt", "not a training checkpoint that loads safely")
    assert not Path("/tmp/unetseg-pwned").exists()


@pytest.mark.slow
def test_failed_train_run_leaves_no_folder(binary_data: Path, tmp_path: Path, capsys) -> None:
    import cv2

    image = binary_data / "train" / "images" / "train0.png"
    cv2.imwrite(str(image.with_suffix(".tiff")), np.full((64, 64), np.nan, np.float32))
    image.unlink()
    code, _, err = run(["train", "--data", str(binary_data), "--runs-dir", str(tmp_path / "runs"), "--epochs", "1",
                        "--size", "64", "--normalize", "none", "--batch-size", "24", *TINY[:6], "--no-progress"],
                       capsys)
    assert code == 2 and "training loss became nan" in err
    assert not any((tmp_path / "runs").iterdir())
