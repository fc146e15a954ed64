"""Tests of ``unetseg.data.transforms``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetseg.core.errors import UnetsegError
from unetseg.data.images import IGNORE
from unetseg.data.transforms import check_size, fit_image, fit_mask, normalize, plan_placement, restore


@pytest.mark.parametrize("mode,size", [("resize", (64, 96)), ("letterbox", (64, 64)), ("pad", None)])
def test_placement_round_trip(mode: str, size: tuple[int, int] | None) -> None:
    orig = (45, 70)
    p = plan_placement(orig, size, mode, divisor=32)
    assert p.out[0] % 32 == 0 and p.out[1] % 32 == 0
    ramp = np.linspace(0, 1, orig[0] * orig[1], dtype=np.float32).reshape(*orig, 1)
    fitted = fit_image(ramp, p)
    assert fitted.shape[:2] == p.out
    back = restore(torch.from_numpy(fitted.transpose(2, 0, 1).copy()), p)[0].numpy()
    assert back.shape == orig
    assert np.abs(back - ramp[..., 0]).max() < (1e-6 if mode == "pad" else 0.05)
    mask = fit_mask(np.zeros(orig, np.uint8), p)
    assert (mask == IGNORE).sum() == p.out[0] * p.out[1] - p.scaled[0] * p.scaled[1]


def test_size_check_suggests_a_valid_size() -> None:
    with pytest.raises(UnetsegError, match="use --size 256x384"):
        check_size([250, 380], "resize", 32)


@pytest.mark.parametrize("channels", [1, 3])
def test_normalize_gives_the_plain_formula_bit_for_bit(channels: int) -> None:
    """Written straight into the CxHxW array, ``normalize`` keeps the plain ``(image - mean) / std``'s bits, so no
    prediction moves with it."""
    image = np.random.default_rng(channels).random((37, 53, channels), dtype=np.float32)
    mean, std = [0.485, 0.456, 0.406][:channels], [0.229, 0.224, 0.225][:channels]
    plain = (image - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    got = normalize(image, mean, std)
    assert got.dtype == torch.float32 and got.is_contiguous()
    assert np.array_equal(got.numpy(), plain.transpose(2, 0, 1))
