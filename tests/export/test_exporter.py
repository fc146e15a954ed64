"""Tests of ``unetseg.export.exporter``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.fixtures import CLASSIC, run, tiny_model_file
from unetseg.core.errors import UnetsegError
from unetseg.export.exporter import RawPixelModel, export, run_exported
from unetseg.inference import InferenceOptions
from unetseg.models.modelfile import load_model
from unetseg.prediction.predict_images import predict


def test_export_onnx_matches_torch_and_refuses_to_replace(tiny_model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tiny.onnx"
    code, stdout, err = run(["export", "--model", str(tiny_model), "--output", str(out)], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "tiny.onnx.json").read_text())
    assert record["export"]["format"] == "onnx" and record["export"]["max_abs_diff_vs_torch"] < 1e-4
    assert record["classes"] == ["background", "call"]
    stamp = out.stat().st_mtime_ns
    code, _, err = run(["export", "--model", str(tiny_model), "--output", str(out)], capsys)
    assert code == 2 and "--overwrite" in err and out.stat().st_mtime_ns == stamp


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    return tiny_model_file(tmp_path, size=(64, 96), name="m", cfg=CLASSIC, classes=("bg", "a", "b", "c"),
                           norm=((0.4, 0.5, 0.6), (0.2, 0.25, 0.3)), seed=0)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_parity_with_raw_pixels_and_dynamic_shapes(model_file: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"m.{fmt}"
    result = export(model_file, out, fmt)
    print(f"{fmt}: max abs difference {result.max_abs_diff:.2e}")
    assert result.max_abs_diff < 1e-4
    module = RawPixelModel(load_model(model_file)).eval()
    x = torch.rand(1, 3, 40, 72) * 255  # another batch size and spatial size than the export's example
    with torch.no_grad():
        expected = module(x).numpy()
    got = run_exported(out, fmt, x.numpy())
    assert got.shape == (1, 4, 40, 72) and np.abs(got - expected).max() < 1e-4
    assert np.allclose(got.sum(axis=1), 1, atol=1e-5)  # softmax inside the graph
    with pytest.raises(UnetsegError, match="already exists"):
        export(model_file, out, fmt)


@pytest.mark.slow
def test_onnxruntime_backend_predicts_the_same_masks(model_file: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((rng.random((50 + 7 * i, 80, 3)) * 255).astype(np.uint8)).save(images / f"{i}.png")
    predict(model_file, images, tmp_path / "torch", options=InferenceOptions(backend="torch"))
    predict(model_file, images, tmp_path / "ort", options=InferenceOptions(backend="onnxruntime", threads=1))
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "torch" / f"{i}.png"))
        b = np.asarray(Image.open(tmp_path / "ort" / f"{i}.png"))
        assert a.shape == b.shape == (50 + 7 * i, 80)
        assert (a == b).mean() > 0.999
