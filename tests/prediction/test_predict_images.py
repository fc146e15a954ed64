"""Tests of ``unetseg.prediction.predict_images``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures import assert_one_line_error, dead_pid, run, tiny_model_file, write_images
from unetseg.cli import main
from unetseg.models.modelfile import load_model


def test_predict_writes_instance_ids(tiny_model: Path, tmp_path: Path, capsys) -> None:

    from unetseg.core.fileio import write_png

    rng = np.random.default_rng(0)
    for i in range(2):
        write_png(tmp_path / "in" / f"im{i}.png", rng.integers(0, 255, (40, 48), dtype=np.uint8))
    code, _, err = run(["predict", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output",
                        str(tmp_path / "out"), "--instances", "--backend", "torch"], capsys)
    assert code == 0, err
    for i in range(2):
        mask = np.asarray(Image.open(tmp_path / "out" / f"im{i}.png"))
        ids = np.asarray(Image.open(tmp_path / "out" / "instances" / f"im{i}.png"))
        assert ids.shape == mask.shape == (40, 48) and ids.dtype == np.uint16
        assert np.array_equal(ids > 0, mask > 0)
        assert ids.max() > 0 and len(np.unique(ids[ids > 0])) == ids.max()  # 1..N, each used


@pytest.mark.slow
def test_export_int8_and_predict_record_what_ran(trained: Path, cache: Path, tmp_path: Path, capsys) -> None:

    copy_dir = tmp_path / "run"  # export writes beside the model: work on a copy of its run folder
    shutil.copytree(trained.parents[1], copy_dir)
    model = copy_dir / "weights" / trained.name
    assert main(["export", "--model", str(model), "--int8"]) == 0
    out = capsys.readouterr().out
    assert "masks agree with fp32 at IoU" in out
    sidecar = json.loads(model.with_suffix(".int8.onnx").with_name(model.stem + ".int8.onnx.json").read_text())
    assert sidecar["export"]["agreement_iou_vs_fp32"] >= 0.98
    images = trained.parents[3] / "calls" / "test" / "images"
    assert main(["predict", "--model", str(model), "--input", str(images), "--output", str(tmp_path / "p"),
                 "--backend", "onnxruntime", "--threshold", "0.4", "--min-size", "3"]) == 0
    used = json.loads((tmp_path / "p" / "inference.json").read_text())
    assert used["backend"] == "onnxruntime" and used["options"]["backend"] == "onnxruntime"
    assert used["postprocess"]["threshold"] == 0.4 and used["postprocess"]["min_size"] == 3
    assert used["model_sha256"] == load_model(model).digest and used["inputs"] == 6
    assert main(["export", "--model", str(model), "--int8", "--format", "torchscript"]) == 2


def test_tile_on_a_model_that_resizes_is_refused(tmp_path: Path, capsys) -> None:
    model, images = tiny_model_file(tmp_path), write_images(tmp_path / "in")
    code, _, err = run(["predict", "--model", str(model), "--input", str(images), "--output",
                        str(tmp_path / "o"), "--tile", "256"], capsys)
    assert_one_line_error(code, err, "--tile 256", "scales every image to 32x32")
    assert not (tmp_path / "o").exists()


def test_predict_resume_finishes_an_interrupted_folder_and_refuses_other_options(tmp_path: Path, capsys) -> None:
    model, images = tiny_model_file(tmp_path, "pad"), write_images(tmp_path / "in", 4)
    base = ["predict", "--model", str(model), "--input", str(images), "--backend", "torch", "--contours"]
    assert run([*base, "--output", str(tmp_path / "full")], capsys)[0] == 0
    out = tmp_path / "part"
    assert run([*base, "--output", str(out)], capsys)[0] == 0
    (out / "im1.png").unlink()
    (out / "contours" / "im2.json").unlink()
    dead = dead_pid()
    (out / f".im3.png.unetseg-{dead}-abc123.tmp.png").write_bytes(b"half a png")  # what kill -9 left
    (out / ".notes.tmp.txt").write_text("mine")  # a user's hidden files, which look temporary
    (out / ".mydata.partial").write_text("mine too")
    code, _, err = run([*base, "--output", str(out)], capsys)
    assert_one_line_error(code, err, "already exists", "--resume")
    code, _, err = run([*base, "--output", str(out), "--resume", "--threshold", "0.3"], capsys)
    assert_one_line_error(code, err, "other options", "postprocess.threshold")
    code, printed, err = run([*base, "--output", str(out), "--resume"], capsys)
    assert code == 0, err
    assert "2 masks written" in printed and "2 done before" in printed
    assert sorted(f.name for f in out.glob(".*")) == [".mydata.partial", ".notes.tmp.txt"]
    for f in (tmp_path / "full").rglob("*"):
        if f.is_file() and f.name != "inference.json":
            assert f.read_bytes() == (out / f.relative_to(tmp_path / "full")).read_bytes(), f
    assert json.loads((out / "inference.json").read_text())["complete"] is True
