"""Prediction of image files: ``predict`` (masks, overlays, probabilities, contours, COCO results) and
``postprocess`` (threshold, morphology, small-component removal, polygons). Loaded lazily."""

from __future__ import annotations

from typing import TYPE_CHECKING

from unetseg.core.lazy import lazy

__all__ = ["PostProcess", "PredictOutputs", "predict", "to_mask"]

if TYPE_CHECKING:
    from unetseg.prediction.postprocess import PostProcess, to_mask
    from unetseg.prediction.predict_images import PredictOutputs, predict


__getattr__ = lazy(__name__, {"predict": "predict_images", "PredictOutputs": "predict_images",
                               "PostProcess": "postprocess", "to_mask": "postprocess"})
