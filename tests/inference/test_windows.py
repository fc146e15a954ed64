"""Tests of ``unetseg.inference.windows``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fixtures import CLASSIC, tiny_model_file
from unetseg.inference import Engine, InferenceOptions
from unetseg.models.modelfile import load_model


@pytest.fixture
def native_model(tmp_path: Path) -> Path:
    """A model that predicts at native size (pad mode), as for large images."""
    return tiny_model_file(tmp_path, "pad", name="native", cfg=CLASSIC, classes=("bg", "fg"), seed=1)


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
