"""unetseg: train, evaluate, predict and serve U-Net segmentation models from one command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "evaluate", "load_model", "predict", "train"]

if TYPE_CHECKING:
    from .evaluate import evaluate
    from .modelfile import load_model
    from .predict import predict
    from .train import train


def __getattr__(name: str) -> Any:
    # Lazy imports keep `unetseg --help` fast (torch and Lightning load only when needed).
    if name == "train":
        from .train import train

        return train
    if name == "evaluate":
        from .evaluate import evaluate

        return evaluate
    if name == "predict":
        from .predict import predict

        return predict
    if name == "load_model":
        from .modelfile import load_model

        return load_model
    raise AttributeError(name)
