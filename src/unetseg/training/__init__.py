"""Training on PyTorch Lightning: ``trainer`` (``train()`` and its wiring), ``task`` (the LightningModule),
``callbacks`` (the run recorder, the schedule) and ``run`` (the run folder)."""

from .callbacks import RunRecorder, WarmupCosine
from .run import check_checkpoint, load_run
from .task import SegmentationTask
from .trainer import TrainResult, audio_model_defaults, lightning_devices, resolve_input, train

__all__ = ["RunRecorder", "SegmentationTask", "TrainResult", "WarmupCosine", "audio_model_defaults",
           "check_checkpoint", "lightning_devices", "load_run", "resolve_input", "train"]
