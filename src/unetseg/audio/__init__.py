"""Bird sound: recordings -> spectrogram images, annotations <-> masks and events, detection and denoising.

``detect_folder`` runs a model over a recording or a folder of them (``audio detect``); ``tune_run`` tunes
detect's settings on a finished run's validation split. Both load lazily: this package root stays light
(the command line imports its limits).
"""

from __future__ import annotations

from typing import Any

from unetseg.audio.settings import MAX_FFT, MAX_MELS, MAX_RATE

__all__ = ["MAX_FFT", "MAX_MELS", "MAX_RATE", "detect_folder", "tune_run"]


def __getattr__(name: str) -> Any:
    if name == "detect_folder":
        from unetseg.audio.runner import detect_folder

        return detect_folder
    if name == "tune_run":
        from unetseg.audio.tuning import tune_run

        return tune_run
    raise AttributeError(name)
