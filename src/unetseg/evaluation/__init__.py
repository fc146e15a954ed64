"""Evaluation: ``evaluate`` scores a split (``evaluate_split``) with the confusion counts and scores of
``pixel_scores`` and the figures of ``figures``. Loaded lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["evaluate"]

if TYPE_CHECKING:
    from unetseg.evaluation.evaluate_split import evaluate


def __getattr__(name: str) -> Any:
    if name == "evaluate":
        from unetseg.evaluation.evaluate_split import evaluate

        return evaluate
    raise AttributeError(name)
