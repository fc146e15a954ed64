"""Tests of ``unetseg.evaluation.pixel_scores``."""

from __future__ import annotations

import pytest
import torch

from unetseg.data.images import IGNORE
from unetseg.evaluation.pixel_scores import confusion_counts, image_iou, summarize


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
