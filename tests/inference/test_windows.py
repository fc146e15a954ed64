"""Tests of ``unetseg.inference.windows``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.fixtures import CLASSIC, tiny_model_file
from unetseg.inference import Engine, InferenceOptions
from unetseg.inference.windows import blend_weights
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


def _expected_stream(image: np.ndarray, predict, width: int, overlap: int, pad_to: int, min_width: int) -> np.ndarray:
    """What ``ColumnStream`` must give, the plain way: every window over the whole image at once (full windows
    every step, then one last window as wide as the columns left need, aligned to the end), each window's
    outputs weighted by ``blend_weights`` and divided by the weights' sum."""
    total, step = image.shape[1], width - overlap
    windows, s = [], 0
    while s + width <= total:
        windows.append((s, width))
        s += step
    covered = windows[-1][0] + width if windows else 0
    if covered < total:
        need = total - max(0, covered - overlap)
        last = min(width, max(-(-min(min_width, width) // pad_to) * pad_to, -(-need // pad_to) * pad_to))
        if total < last:
            x = np.zeros((1, image.shape[0], last), image.dtype)
            x[0, :, :total] = image
            return predict(x)[0][..., :total]
        windows.append((total - last, last))
    acc = np.zeros((2, image.shape[0], total), np.float32)
    wsum = np.zeros(total, np.float32)
    for start, w in windows:
        weights = blend_weights((w,), "linear").numpy()
        acc[..., start:start + w] += predict(image[None, :, start:start + w])[0] * weights
        wsum[start:start + w] += weights
    return acc / wsum


@pytest.mark.parametrize(("total", "blocks", "width", "overlap", "pad_to"), [
    (1000, 1, 128, 32, 1), (1000, 7, 128, 32, 1), (1000, 13, 128, 100, 8), (960, 4, 128, 0, 32),
    (130, 3, 128, 32, 32), (70, 2, 128, 32, 32), (5, 1, 128, 16, 32), (2000, 9, 256, 64, 32)])
def test_column_stream_is_the_plain_blend_of_its_windows(total: int, blocks: int, width: int, overlap: int,
                                                         pad_to: int) -> None:
    """Blocks of any size give, bit for bit, the weighted mean of the windows over the whole image (each
    window's outputs times its weights, summed in the order the windows ran, over the weights' sum)."""
    from unetseg.inference.windows import ColumnStream

    rng = np.random.default_rng(total + blocks)
    image = rng.integers(0, 256, (6, total), dtype=np.uint8)

    def predict(x: np.ndarray) -> np.ndarray:  # depends on the column's place in its window: blending shows
        place = np.arange(x.shape[-1], dtype=np.float32) / x.shape[-1]
        return np.stack([x / np.float32(255) + place, np.sqrt(x.astype(np.float32)) * place], axis=1)

    def stream() -> ColumnStream:
        return ColumnStream(predict, 2, width, overlap, batch_size=2, blend="linear", pad_to=pad_to, min_width=64)

    cuts = np.sort(rng.choice(np.arange(1, total), size=min(blocks - 1, total - 1), replace=False))
    now = stream()
    parts = [now.push(block) for block in np.split(image, cuts, axis=1)] + [now.finish()]
    got = np.concatenate(parts, axis=2)
    expected = _expected_stream(image, predict, width, overlap, pad_to, 64)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.array_equal(got, expected)  # bit for bit: events cannot move with the blocks or the stream's code
    # blended later (as detect does, in its events thread, while the stream runs on): the same bits
    later = stream()
    blends = [later.advance(block) for block in np.split(image, cuts, axis=1)] + [later.end()]
    assert np.array_equal(np.concatenate([blend() for blend in blends], axis=2), expected)
