"""Bird sound: recordings -> spectrogram images, annotations <-> masks and events, detection and denoising.

``detect_folder`` runs a model over a recording or a folder of them (``audio detect``); ``tune_run`` tunes
detect's settings on a finished run's validation split. Both load lazily: this package root stays light
(the command line imports its limits).
"""

from __future__ import annotations

from unetseg.audio.settings import MAX_FFT, MAX_MELS, MAX_RATE
from unetseg.core.lazy import lazy

__all__ = ["MAX_FFT", "MAX_MELS", "MAX_RATE", "detect_folder", "tune_run"]


__getattr__ = lazy(__name__, {"detect_folder": "runner", "tune_run": "tuning"})
