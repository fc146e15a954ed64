"""One inference engine for predict, evaluate, audio detect and serve.

``InferenceOptions`` says how to run (device, backend, batches, tiles, flips); ``Engine`` loads a
backend once (torch fp32 or bf16, onnxruntime fp32 or int8; ``auto`` picks the fastest here) and runs
images or spectrogram windows; ``windows`` holds the one sliding-window and blending core; ``classes``
turns logits into probabilities and classes. It knows nothing of files, events or
export: audio turns its maps into events, predict into files, export writes the graphs it builds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unetseg.core.lazy import lazy
from unetseg.inference.options import InferenceOptions

__all__ = ["Engine", "ImageDataset", "InferenceOptions", "activate", "to_classes"]

if TYPE_CHECKING:
    from unetseg.inference.classes import activate, to_classes
    from unetseg.inference.engine import Engine, ImageDataset


# Lazy: the command line imports the options (no torch) to build its flags.
__getattr__ = lazy(__name__, {"Engine": "engine", "ImageDataset": "engine", "activate": "classes",
                               "to_classes": "classes"})
