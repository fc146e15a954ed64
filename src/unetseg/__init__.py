"""unetseg: train, evaluate, predict and serve U-Net segmentation models from one command.

The package root is a facade over the stages (nothing inside the package imports it): ``train`` (training,
then, for annotated recordings, detect's settings tuned on the validation split), ``evaluate``, ``predict``
and ``load_model``. Lazy imports keep ``unetseg --help`` fast (torch and Lightning load only when needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetseg.core.lazy import lazy
from unetseg.version import __version__

__all__ = ["__version__", "evaluate", "load_model", "predict", "train"]

if TYPE_CHECKING:
    from unetseg.core.config import Config
    from unetseg.evaluation.evaluate_split import evaluate
    from unetseg.models.modelfile import load_model
    from unetseg.prediction.predict_images import predict
    from unetseg.training import TrainResult


def train(config: Config | dict | None = None, resume: str | Path | None = None,
          overrides: dict[str, dict[str, Any]] | None = None, callbacks: list | None = None) -> TrainResult:
    """``unetseg.training.train``; then, for a run on annotated recordings, detect's event settings tuned on
    its validation split and stored in its model files (``unetseg.audio.tuning.tune_run``)."""
    from unetseg.audio.tuning import tune_run
    from unetseg.training import train as train_run

    result = train_run(config, resume, overrides, callbacks)
    if result.main:
        tune_run(result.run_dir)
    return result


# ``unetseg.<stage>.<module>``: loaded on first use, so that ``unetseg --help`` stays light.
__getattr__ = lazy("unetseg", {"evaluate": "evaluation.evaluate_split", "predict": "prediction.predict_images",
                               "load_model": "models.modelfile"})
