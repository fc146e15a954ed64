"""Training on PyTorch Lightning: ``trainer`` (``train()`` and its wiring), ``task`` (the LightningModule),
``callbacks`` (the run recorder, the schedule) and ``run`` (the run folder)."""

from unetseg.training.callbacks import RunRecorder, WarmupCosine
from unetseg.training.run import check_checkpoint, load_run
from unetseg.training.task import SegmentationTask
from unetseg.training.trainer import TrainResult, audio_model_defaults, lightning_devices, resolve_input, train

__all__ = ["RunRecorder", "SegmentationTask", "TrainResult", "WarmupCosine", "audio_model_defaults",
           "check_checkpoint", "lightning_devices", "load_run", "resolve_input", "train"]
