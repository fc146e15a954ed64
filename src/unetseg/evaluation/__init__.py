"""Evaluation: ``evaluate`` scores a split (``evaluate_split``) with the confusion counts and scores of
``pixel_scores`` and the figures of ``figures``. Loaded lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

from unetseg.core.lazy import lazy

__all__ = ["evaluate"]

if TYPE_CHECKING:
    from unetseg.evaluation.evaluate_split import evaluate


__getattr__ = lazy(__name__, {"evaluate": "evaluate_split"})
