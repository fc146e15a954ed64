"""Export with normalisation inside the graph, parity with torch, and the onnxruntime backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unetseg.core.errors import UnetsegError
from unetseg.data.inputspec import InputSpec
from unetseg.export.exporter import RawPixelModel, export, run_exported
from unetseg.inference import Engine, InferenceOptions
from unetseg.models import create_model
from unetseg.models.modelfile import build_meta, load_model, save_model_file
from unetseg.prediction.predict_images import predict

from .test_models import CLASSIC


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model(CLASSIC, 3, 4).eval()
    meta = build_meta(CLASSIC, ["bg", "a", "b", "c"], False, [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)],
                      InputSpec(3, (64, 96), "resize", 8, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)), 0.5)
    return save_model_file(tmp_path / "m.safetensors", model, meta)


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


@pytest.fixture
def native_model(tmp_path: Path) -> Path:
    """A model that predicts at native size (pad mode), as for large images."""
    torch.manual_seed(1)
    model = create_model(CLASSIC, 3, 1).eval()
    meta = build_meta(CLASSIC, ["bg", "fg"], True, [(0, 0, 0), (255, 0, 0)],
                      InputSpec(3, None, "pad", 8, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)), 0.5)
    return save_model_file(tmp_path / "native.safetensors", model, meta)


def _smooth_image(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    r = 0.5 + 0.5 * np.sin(xx / 9.0) * np.cos(yy / 13.0)
    return np.stack([r, np.roll(r, 17, axis=1), r[::-1]], axis=2).astype(np.float32)


@pytest.mark.parametrize("blend", ["gaussian", "linear"])
def test_tiled_prediction_has_no_seams(native_model: Path, blend: str) -> None:

    image = _smooth_image(360, 520)
    loaded = load_model(native_model)
    whole = Engine(loaded, InferenceOptions(backend="torch")).probabilities([image])[0]
    options = InferenceOptions(backend="torch", tile=192, tile_overlap=0.5, blend=blend)
    tiled = Engine(loaded, options).probabilities([image])[0]
    diff = (whole - tiled).abs()[0]
    print(f"{blend}: mean |whole - tiled| {diff.mean():.2e}, max {diff.max():.2e}")
    assert tiled.shape == whole.shape == (1, 360, 520)
    assert diff.mean() < 5e-3
    # A seam would show as a ridge of differences where tiles meet: every row and column stays tiny.
    assert diff.mean(dim=0).max() < 1e-3 and diff.mean(dim=1).max() < 1e-3
    assert diff.max() < 0.02
    assert ((whole > 0.5) == (tiled > 0.5)).float().mean() > 0.99


def test_flip_tta_averages_three_views(native_model: Path) -> None:

    image = _smooth_image(64, 96)
    loaded = load_model(native_model)
    plain = Engine(loaded, InferenceOptions(backend="torch")).probabilities([image])[0]
    tta = Engine(loaded, InferenceOptions(backend="torch", tta=True)).probabilities([image])[0]
    flipped = Engine(loaded, InferenceOptions(backend="torch")).probabilities([image[:, ::-1].copy()])[0].flip(2)
    assert tta.shape == plain.shape and not torch.allclose(tta, plain)
    assert ((tta - plain).abs().mean() < (flipped - plain).abs().mean() + 1e-6)
