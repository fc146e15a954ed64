"""The engine's output stage: logits -> probabilities -> classes (events are audio's: ``unetseg.audio.events``)."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from unetseg.instances.centres import HEAD_CHANNELS, activate_head

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def activate(logits: Array, binary: bool, axis: int = 1, head: bool = False) -> Array:
    """Logits -> probabilities: a sigmoid for binary models, a softmax over ``axis`` otherwise. With ``head``
    the last ``HEAD_CHANNELS`` along ``axis`` are the instance head's (``axis`` must be the third from last):
    its heat probability and edge distances follow the class probabilities."""
    if isinstance(logits, np.ndarray):
        return activate(torch.from_numpy(logits), binary, axis, head).numpy()
    if head:
        n = logits.shape[axis] - HEAD_CHANNELS
        classes = activate(logits.narrow(axis, 0, n), binary, axis)
        return torch.cat([classes, activate_head(logits.narrow(axis, n, HEAD_CHANNELS))], dim=axis)
    return torch.sigmoid(logits) if binary else torch.softmax(logits, dim=axis)


def activate_(logits: torch.Tensor, binary: bool, axis: int = 1, head: bool = False) -> torch.Tensor:
    """``activate`` in place on ``logits``, which it returns: the engine's hot path, one buffer and no copies
    (the same values as ``activate``)."""
    n = logits.shape[axis] - (HEAD_CHANNELS if head else 0)
    classes = logits.narrow(axis, 0, n)
    if binary:
        classes.sigmoid_()
    else:
        classes.copy_(torch.softmax(classes, dim=axis))
    if head:
        logits.narrow(axis, n, 1).sigmoid_()
        logits.narrow(axis, n + 1, HEAD_CHANNELS - 1).clamp_(0, 20).expm1_()
    return logits


def to_classes(probs: Array, binary: bool, threshold: float, axis: int = 0) -> Array:
    """Probabilities -> class indices, the class ``axis`` removed: foreground above ``threshold`` for binary
    models (one channel), the most probable class otherwise. Arrays give uint8 arrays; tensors give long
    tensors on their device (training's validation)."""
    if isinstance(probs, torch.Tensor):
        return (probs.select(axis, 0) > threshold).long() if binary else probs.argmax(dim=axis)
    if binary:
        return (np.take(probs, 0, axis=axis) > threshold).astype(np.uint8)
    return probs.argmax(axis).astype(np.uint8)


def unflip(outputs: torch.Tensor, dim: int, head: int | None = None) -> torch.Tensor:
    """Outputs (N, C, H, W) of a flipped input, flipped back along ``dim`` (3: left-right, 2: up-down). With
    the instance head's channels from index ``head`` on, the flipped edge distances trade places too (left
    and right, or top and bottom), so every map means what it means without the flip."""
    out = outputs.flip(dim)
    if head is None:
        return out
    a, b = (head + 1, head + 3) if dim == 3 else (head + 2, head + 4)
    order = list(range(out.shape[1]))
    order[a], order[b] = order[b], order[a]
    return out[:, order]
