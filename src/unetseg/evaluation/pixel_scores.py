"""Segmentation metrics from per-image, per-class confusion counts.

Counts (tp, fp, tn, fn) come from one bincount of (image, true, predicted) triples with ignored pixels left
out (no one-hot tensors, and no torchmetrics: these counts are all it would give); every score is computed
from them. Over a split, counts are summed over all pixels before dividing (micro over images), so an
image with an empty mask adds only its false positives. A class with no pixels in the truth nor the
prediction of the whole split has no score (NaN) and is left out of the means. For a single image
(per-image IoU), an empty truth predicted empty scores 1.0.

Binary tasks report the foreground class; multi-class tasks report the mean over classes.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from unetseg.data.images import IGNORE

SCORES = ("iou", "dice", "precision", "recall")


def confusion_matrices(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, H, W) predicted and true class indices -> (N, C, C) pixel counts [image, true, predicted];
    ``IGNORE`` pixels of the target count nowhere. One bincount of (image, true, predicted) triples."""
    n, c = pred.shape[0], num_classes
    target, pred = target.reshape(n, -1).long(), pred.reshape(n, -1).long()
    valid = target != IGNORE
    image = torch.arange(n, device=pred.device).unsqueeze(1).expand_as(target)
    index = (image * c + target) * c + pred.clamp(0, c - 1)
    return torch.bincount(index[valid], minlength=n * c * c).reshape(n, c, c)


def counts_from_matrices(matrix: torch.Tensor) -> torch.Tensor:
    """(N, C, C) confusion matrices -> (N, C, 4) counts tp, fp, tn, fn per class."""
    tp = matrix.diagonal(dim1=1, dim2=2)
    fp = matrix.sum(1) - tp
    fn = matrix.sum(2) - tp
    tn = matrix.sum((1, 2)).unsqueeze(1) - tp - fp - fn
    return torch.stack([tp, fp, tn, fn], dim=2)


def confusion_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, H, W) predicted and true class indices -> (N, C, 4) counts tp, fp, tn, fn; ``IGNORE`` pixels of
    the target count nowhere (no one-hot tensors: see ``confusion_matrices``)."""
    return counts_from_matrices(confusion_matrices(pred, target, num_classes))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def scores_from_counts(counts: np.ndarray) -> dict[str, np.ndarray]:
    """(C, 4) counts -> per-class iou, dice, precision, recall (NaN where undefined)."""
    tp, fp, _tn, fn = (counts[:, i].astype(np.float64) for i in range(4))
    return {
        "iou": _ratio(tp, tp + fp + fn),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
    }


def summarize(counts: np.ndarray, class_names: list[str], binary: bool) -> dict:
    """Headline scores, pixel accuracy and per-class scores from (C, 4) counts summed over a split."""
    per = scores_from_counts(counts)
    valid = counts[:, 0].sum() + counts[:, 3].sum()  # every valid pixel is a tp or fn of its true class
    out: dict = {"accuracy": _clean(counts[:, 0].sum() / valid if valid else math.nan)}
    for name in SCORES:
        out[name] = _clean(per[name][1] if binary else _nanmean(per[name]))
    out["per_class"] = {
        cls: {name: _clean(per[name][i]) for name in SCORES}
        for i, cls in enumerate(class_names)
    }
    return out


def image_score(counts: np.ndarray, binary: bool, name: str = "iou", empty: float = 1.0) -> float:
    """One image's score (``iou``, ``dice``, ...) from its (C, 4) counts: the foreground's (binary) or the
    mean over classes present in truth or prediction; ``empty`` where nothing is present nor predicted."""
    per_class = scores_from_counts(counts)[name]
    value = per_class[1] if binary else _nanmean(per_class)
    return empty if math.isnan(value) else float(value)


def image_iou(counts: np.ndarray, binary: bool) -> float:
    """IoU of one image; 1.0 where nothing is present and nothing predicted."""
    return image_score(counts, binary, "iou")


def _nanmean(x: np.ndarray) -> float:
    return float(np.nanmean(x)) if np.isfinite(x).any() else math.nan


def _clean(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else round(x, 6)


def mask_agreement(a: np.ndarray, b: np.ndarray, num_classes: int, binary: bool) -> float:
    """IoU between two sets of predicted class masks (any shape, same shape), pooled over all pixels:
    how far one backend's masks agree with another's."""
    counts = confusion_counts(torch.from_numpy(np.ascontiguousarray(a)).reshape(1, -1),
                              torch.from_numpy(np.ascontiguousarray(b)).reshape(1, -1), num_classes)[0].numpy()
    return image_iou(counts, binary)
