"""Tests of ``unetseg.cli.images``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tests.fixtures import TINY, assert_one_line_error, run


@pytest.mark.slow
def test_camvid_multiclass_end_to_end(camvid: Path, tmp_path: Path, capsys) -> None:
    runs = tmp_path / "runs"
    code, out, err = run(["train", "--data", str(camvid), "--arch", "unet", "--encoder", "resnet18",
                          "--size", "96x128", "--crop", "64x64", "--epochs", "1", "--batch-size", "8",
                          "--runs-dir", str(runs), "--name", "camvid", "--no-test", "--no-progress",
                          "--workers", "0"], capsys)
    assert code == 0, err
    model = runs / "camvid" / "weights" / "best.safetensors"
    code, out, err = run(["evaluate", "--model", str(model), "--data", str(camvid), "--figures", "2",
                          "--output", str(tmp_path / "eval")], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 40 and len(metrics["per_class"]) == 11 and "pedestrian" in metrics["per_class"]
    assert 0 < metrics["accuracy"] <= 1
    assert len(list((tmp_path / "eval" / "figures").glob("*.png"))) == 2
    # The confusion matrix agrees with the per-class counts: its diagonal over its row and column sums is IoU.
    matrix = np.array(metrics["confusion_matrix"]["pixels"])
    assert matrix.shape == (11, 11)
    tp, fp, fn = np.diag(matrix), matrix.sum(0) - np.diag(matrix), matrix.sum(1) - np.diag(matrix)
    for c, name in enumerate(metrics["per_class"]):
        iou = metrics["per_class"][name]["iou"]
        if iou is not None:
            assert abs(tp[c] / (tp[c] + fp[c] + fn[c]) - iou) < 1e-5, name
    for picture in ("confusion_matrix.png", "class_iou.png"):
        assert Image.open(tmp_path / "eval" / picture).size[0] > 300
    with (tmp_path / "eval" / "per_image.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 40

    images = Path(json.loads((runs / "camvid" / "dataset.json").read_text())["splits"]["test"][0][0]).parent
    code, out, err = run(["predict", "--model", str(model), "--input", str(images / "0001TP_008*.png"),
                          "--output", str(tmp_path / "pred")], capsys)
    assert code == 0, err
    masks = sorted((tmp_path / "pred").glob("*.png"))
    assert masks
    mask = Image.open(masks[0])
    assert mask.mode == "P" and mask.size == (480, 360) and np.array(mask).max() <= 10


def _train(data: Path, tmp_path: Path, capsys, *extra: str) -> tuple[int, str, str]:
    return run(["train", "--data", str(data), "--size", "64", "--epochs", "1", "--runs-dir",
                str(tmp_path / "runs"), "--no-test", *TINY, *extra], capsys)


def test_truncated_image(binary_data: Path, tmp_path: Path, capsys) -> None:
    victim = binary_data / "train" / "images" / "train3.png"
    victim.write_bytes(victim.read_bytes()[:200])
    code, _, err = _train(binary_data, tmp_path, capsys)
    assert_one_line_error(code, err, "train3.png", "not a readable image")


def test_image_without_mask(binary_data: Path, tmp_path: Path, capsys) -> None:
    (binary_data / "valid" / "masks" / "valid2.png").unlink()
    code, _, err = _train(binary_data, tmp_path, capsys)
    assert_one_line_error(code, err, "valid2.png", "has no mask")
    assert not (tmp_path / "runs").exists(), "a run folder was made for a dataset that fails its checks"


def test_mask_without_image(binary_data: Path, tmp_path: Path, capsys) -> None:
    (binary_data / "train" / "images" / "train5.png").unlink()
    code, _, err = _train(binary_data, tmp_path, capsys)
    assert_one_line_error(code, err, "train5.png", "has no image")


def test_mask_values_outside_the_classes(binary_data: Path, tmp_path: Path, capsys) -> None:
    mask = binary_data / "valid" / "masks" / "valid1.png"
    array = np.array(Image.open(mask))
    array[0, 0] = 7
    Image.fromarray(array).save(mask)
    code, _, err = _train(binary_data, tmp_path, capsys)
    assert_one_line_error(code, err, "valid1.png", "mask values [7] outside the classes")


def test_image_mask_size_mismatch(binary_data: Path, tmp_path: Path, capsys) -> None:
    image = binary_data / "train" / "images" / "train0.png"
    Image.fromarray(np.zeros((64, 50), np.uint8)).save(image)
    code, _, err = _train(binary_data, tmp_path, capsys)
    assert_one_line_error(code, err, "train0.png", "image is 50x64 but its mask")


def test_empty_split(binary_data: Path, tmp_path: Path, capsys) -> None:
    for f in (binary_data / "train" / "images").glob("*.png"):
        f.unlink()
    for f in (binary_data / "train" / "masks").glob("*.png"):
        f.unlink()
    code, _, err = _train(binary_data, tmp_path, capsys)
    assert_one_line_error(code, err, str(binary_data), "train split is empty")


def test_model_file_that_is_not_ours(binary_data: Path, tmp_path: Path, capsys) -> None:
    fake = tmp_path / "model.safetensors"
    fake.write_bytes(b"PK\x03\x04 definitely a zip file")
    code, _, err = run(["predict", "--model", str(fake), "--input", str(binary_data / "test" / "images"),
                        "--output", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, "model.safetensors", "not a unetseg model file")
    assert not (tmp_path / "out").exists()


def test_nan_loss_stops_training(binary_data: Path, tmp_path: Path, capsys) -> None:
    image = binary_data / "train" / "images" / "train0.png"
    nan_image = np.full((64, 64), np.nan, np.float32)
    cv2.imwrite(str(image.with_suffix(".tiff")), nan_image)
    image.unlink()
    code, _, err = _train(binary_data, tmp_path, capsys, "--normalize", "none", "--batch-size", "24")
    assert_one_line_error(code, err, "training loss became nan", "lower the learning rate")
