"""Losses, metrics and post-processing on small arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unetseg.core.errors import UnetsegError
from unetseg.data.images import IGNORE
from unetseg.evaluation.pixel_scores import confusion_counts, image_iou, summarize
from unetseg.prediction.postprocess import (
    PostProcess,
    fill_holes,
    mask_to_polygons,
    postprocess_mask,
    remove_small_components,
)
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


def test_metrics_from_known_counts() -> None:
    truth = torch.tensor([[[1, 1, 0, 0], [0, 0, 0, IGNORE]]])
    pred = torch.tensor([[[1, 0, 1, 0], [0, 0, 0, 1]]])
    counts = confusion_counts(pred, truth, 2)[0].numpy()
    assert counts[1].tolist() == [1, 1, 4, 1]  # tp fp tn fn, the ignored pixel left out
    s = summarize(counts, ["bg", "fg"], binary=True)
    assert s["iou"] == pytest.approx(1 / 3) and s["dice"] == pytest.approx(0.5)
    assert s["precision"] == pytest.approx(0.5) and s["accuracy"] == pytest.approx(5 / 7)


def test_absent_classes_leave_the_mean_and_empty_images_score_one() -> None:
    truth = torch.zeros(1, 4, 4, dtype=torch.long)
    pred = torch.zeros(1, 4, 4, dtype=torch.long)
    counts = confusion_counts(pred, truth, 3)[0].numpy()
    s = summarize(counts, ["a", "b", "c"], binary=False)
    assert s["iou"] == 1.0 and s["per_class"]["b"]["iou"] is None
    assert image_iou(confusion_counts(pred, truth, 2)[0].numpy(), binary=True) == 1.0
    pred[0, 0, 0] = 1
    assert image_iou(confusion_counts(pred, truth, 2)[0].numpy(), binary=True) == 0.0


def test_small_components_and_holes() -> None:
    fg = np.zeros((10, 10), bool)
    fg[1:6, 1:6] = True
    fg[3, 3] = False  # a hole
    fg[8, 8] = True  # a speck
    cleaned = postprocess_mask(fg.astype(np.uint8), PostProcess(min_size=3, fill_holes=True), binary=True)
    assert cleaned[3, 3] == 1 and cleaned[8, 8] == 0 and cleaned.sum() == 25
    assert remove_small_components(fg, 2).sum() == fg.sum() - 1
    assert fill_holes(fg).sum() == fg.sum() + 1


def test_multiclass_small_regions_take_the_surrounding_class() -> None:
    mask = np.full((9, 9), 2, np.uint8)
    mask[4, 4] = 1
    out = postprocess_mask(mask, PostProcess(min_size=2), binary=False)
    assert (out == 2).all()


def test_polygons_with_holes() -> None:
    mask = np.zeros((12, 12), np.uint8)
    mask[2:10, 2:10] = 1
    mask[5:7, 5:7] = 0
    objects = mask_to_polygons(mask, ["background", "call"], binary=True)
    assert len(objects) == 1 and objects[0]["class"] == "call"
    assert len(objects[0]["holes"]) == 1
    assert objects[0]["area"] == 8 * 8 - 2 * 2


def test_confusion_counts_match_torchmetrics() -> None:
    """The bincount confusion equals torchmetrics' per-image stat scores, ignored pixels included."""
    from torchmetrics.functional.classification import multiclass_stat_scores

    g = torch.Generator().manual_seed(0)
    for classes in (2, 5):
        truth = torch.randint(0, classes, (3, 17, 23), generator=g)
        truth[0, :4] = IGNORE
        truth[1] = IGNORE
        pred = torch.randint(0, classes, (3, 17, 23), generator=g)
        ref = multiclass_stat_scores(pred, truth, num_classes=classes, average=None, multidim_average="samplewise",
                                     ignore_index=IGNORE)[..., :4]
        assert torch.equal(confusion_counts(pred, truth, classes), ref)
