"""Segmentation losses and their weighted sums, built from segmentation_models_pytorch.

``"bce+jaccard"`` and ``"0.7*ce+0.3*dice"`` are sums; binary models use sigmoid outputs (one channel),
multi-class models softmax; the ce term takes optional per-class weights. Pixels marked ``IGNORE`` in
the target count in no loss.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from unetseg.core.errors import UnetsegError
from unetseg.data.images import IGNORE

LOSS_NAMES = ("bce", "dice", "jaccard", "focal", "ce", "lovasz", "tversky")
BINARY_ONLY, MULTICLASS_ONLY = {"bce"}, {"ce"}


def parse_loss(spec: str, binary: bool) -> list[tuple[float, str]]:
    """``"0.5*bce+dice"`` -> [(0.5, "bce"), (1.0, "dice")], checked against the task."""
    if spec == "auto":
        spec = "bce+dice" if binary else "ce+dice"
    terms = []
    for part in spec.replace(" ", "").lower().split("+"):
        weight, _, name = part.rpartition("*")
        try:
            w = float(weight) if weight else 1.0
        except ValueError:
            raise UnetsegError(f"loss {spec!r}: bad weight {weight!r}") from None
        if not (math.isfinite(w) and w > 0):
            raise UnetsegError(f"loss {spec!r}: weights must be positive numbers, not {weight!r}")
        if name not in LOSS_NAMES:
            raise UnetsegError(f"loss {spec!r}: unknown term {name!r} (known: {', '.join(LOSS_NAMES)})")
        if binary and name in MULTICLASS_ONLY:
            raise UnetsegError(f"loss {spec!r}: ce is for multi-class data; use bce for binary masks")
        if not binary and name in BINARY_ONLY:
            raise UnetsegError(f"loss {spec!r}: bce is for binary masks; use ce for multi-class data")
        terms.append((w, name))
    return terms


def parse_class_weights(text: str | None, classes: list[str], binary: bool) -> list[float] | None:
    """``"none"`` -> None; ``"1,2.5,..."`` -> one positive weight per class of a multi-class dataset."""
    if text is None or str(text).strip().lower() in ("", "none"):
        return None
    if binary:
        raise UnetsegError("class_weights apply to the ce term of multi-class data; this dataset is binary")
    try:
        weights = [float(v) for v in str(text).replace(" ", "").strip("[]").split(",")]
    except ValueError:
        raise UnetsegError(f"class_weights {text!r}: expected numbers separated by commas") from None
    if len(weights) != len(classes):
        raise UnetsegError(f"class_weights {text!r}: {len(weights)} weights for {len(classes)} classes "
                           f"({', '.join(classes)})")
    if not all(w > 0 and w < float("inf") for w in weights):
        raise UnetsegError(f"class_weights {text!r}: every weight must be a positive number")
    return weights


def _make(name: str, mode: str, class_weights: list[float] | None = None) -> nn.Module:
    from segmentation_models_pytorch import losses as L

    if name == "bce":
        return L.SoftBCEWithLogitsLoss(ignore_index=IGNORE)
    if name == "ce":
        weight = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        return nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE)
    if name == "dice":
        return L.DiceLoss(mode, ignore_index=IGNORE)
    if name == "jaccard":
        return L.JaccardLoss(mode, ignore_index=IGNORE)
    if name == "focal":
        return L.FocalLoss(mode, ignore_index=IGNORE)
    if name == "lovasz":
        return L.LovaszLoss(mode, ignore_index=IGNORE)
    return L.TverskyLoss(mode, ignore_index=IGNORE)


class SegmentationLoss(nn.Module):
    """Weighted sum of losses on logits (N, C, H, W) and uint8 class-index targets (N, H, W)."""

    def __init__(self, spec: str, binary: bool, class_weights: list[float] | None = None) -> None:
        super().__init__()
        self.binary = binary
        self.terms = parse_loss(spec, binary)
        mode = "binary" if binary else "multiclass"
        self.losses = nn.ModuleList(_make(name, mode, class_weights) for _, name in self.terms)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.unsqueeze(1).float() if self.binary else target.long()
        total = logits.new_zeros(())
        for (weight, _), loss in zip(self.terms, self.losses, strict=True):
            total = total + weight * loss(logits, target)
        return total

    @property
    def description(self) -> str:
        return "+".join(f"{w:g}*{n}" if w != 1 else n for w, n in self.terms)


class InstanceLoss(nn.Module):
    """The instance head's loss (CenterNet's): a penalty-reduced focal loss on the centre heatmap (logits
    (N, 1, H, W) against Gaussian targets), plus ``edge_weight`` x L1 of log(1 + edge distance) at the centre
    pixels, each averaged over the centres of the batch."""

    def __init__(self, edge_weight: float = 1.0) -> None:
        super().__init__()
        self.edge_weight = edge_weight

    def forward(self, head: torch.Tensor, heat: torch.Tensor, edges: torch.Tensor,
                centres: torch.Tensor) -> torch.Tensor:
        logits, log_edges = head[:, :1].float(), head[:, 1:].float()
        p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
        positive = centres[:, None]  # the centre pixels, where the target heat is 1
        log_p, log_not = nn.functional.logsigmoid(logits), nn.functional.logsigmoid(-logits)
        focal = torch.where(positive, (1 - p) ** 2 * log_p, (1 - heat) ** 4 * p**2 * log_not)
        count = centres.sum().clamp(min=1)
        loss = -focal.sum() / count
        where = centres[:, None].expand_as(log_edges)
        target = torch.log1p(edges)
        return loss + self.edge_weight * (log_edges[where] - target[where]).abs().sum() / (4 * count)
