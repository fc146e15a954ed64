"""Tests of ``unetseg.training.losses``."""

from __future__ import annotations

import pytest
import torch

from unetseg.core.errors import UnetsegError
from unetseg.data.images import IGNORE
from unetseg.training.losses import SegmentationLoss, parse_loss


def test_parse_loss_sums_and_checks_the_task() -> None:
    assert parse_loss("0.3*bce+0.7*jaccard", binary=True) == [(0.3, "bce"), (0.7, "jaccard")]
    assert parse_loss("auto", binary=False) == [(1.0, "ce"), (1.0, "dice")]
    with pytest.raises(UnetsegError, match="bce is for binary masks"):
        parse_loss("bce", binary=False)
    with pytest.raises(UnetsegError, match="unknown term 'dise'"):
        parse_loss("ce+dise", binary=False)


@pytest.mark.parametrize("spec,binary", [("bce+dice", True), ("focal+jaccard", True), ("ce+dice", False),
                                         ("lovasz+tversky", False)])
def test_losses_ignore_ignored_pixels(spec: str, binary: bool) -> None:
    torch.manual_seed(0)
    channels = 1 if binary else 3
    logits = torch.randn(2, channels, 8, 8)
    target = torch.randint(0, 2 if binary else 3, (2, 8, 8), dtype=torch.uint8)
    target[:, :2] = IGNORE
    loss = SegmentationLoss(spec, binary)
    changed = logits.clone()
    changed[:, :, :2] = 50.0  # only ignored pixels change
    assert torch.isfinite(loss(logits, target))
    assert loss(logits, target).item() == pytest.approx(loss(changed, target).item(), rel=1e-5, abs=1e-6)
