"""Prediction of image files: ``predict`` (masks, overlays, probabilities, contours, COCO results) and
``postprocess`` (threshold, morphology, small-component removal, polygons). Loaded lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["PostProcess", "PredictOutputs", "predict", "to_mask"]

if TYPE_CHECKING:
    from unetseg.prediction.postprocess import PostProcess, to_mask
    from unetseg.prediction.predict_images import PredictOutputs, predict


def __getattr__(name: str) -> Any:
    if name in ("predict", "PredictOutputs"):
        from unetseg.prediction import predict_images

        return getattr(predict_images, name)
    if name in ("PostProcess", "to_mask"):
        from unetseg.prediction import postprocess

        return getattr(postprocess, name)
    raise AttributeError(name)
