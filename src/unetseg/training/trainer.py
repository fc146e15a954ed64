"""``train()``: a dataset and settings in, a run folder out, on PyTorch Lightning (one machine, several
GPUs or a cluster with the same call). The LightningModule is in ``task``, the run folder in ``run``."""

from __future__ import annotations

import copy
import logging
import math
import os
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

from unetseg.core.config import Config
from unetseg.core.distributed import announce_run_dir, forget_run_dir, is_main_process, shared_run_dir
from unetseg.core.errors import UnetsegError
from unetseg.core.guard import folder_lock
from unetseg.data.dataset import PadCollate, SegmentationDataset, mean_std
from unetseg.data.discover import DatasetInfo, load_dataset
from unetseg.data.images import image_channels
from unetseg.data.inputspec import InputSpec
from unetseg.data.stats import PairStats, check_pairs
from unetseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_augment, check_size
from unetseg.instances.centres import has_head
from unetseg.models import create_model, load_encoder_weights, output_stride
from unetseg.models.estimates import check_training_memory
from unetseg.models.modelfile import build_meta, check_meta
from unetseg.plan import AUDIO_BASE_WIDTH, Plan, make_plan, sample_weights
from unetseg.training.callbacks import RunRecorder, StopOnTerminate, WarmupCosine
from unetseg.training.losses import parse_class_weights, parse_loss
from unetseg.training.run import check_checkpoint, load_run, make_run_dir, mark_failed, write_config
from unetseg.training.task import SegmentationTask
from unetseg.training.warm_start import choose_prior, init_input, init_settings, load_init_weights

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    best_model: Path
    last_model: Path
    best_score: float | None
    best_epoch: int | None
    epochs_run: int
    interrupted: bool
    main: bool = True  # False in the other processes of a multi-process run (they write nothing)
    terminated: bool = False  # stopped by SIGTERM: the state saved in weights/last.ckpt for --resume


@dataclass
class _Setup:
    """What a run trains on: settings, data, input, the checkpoint to resume and (new runs) the measurements."""

    cfg: Config
    info: DatasetInfo
    spec: InputSpec
    run_dir: Path | None = None
    ckpt: Path | None = None
    stats: PairStats | None = None
    plan: Plan | None = None


def train(config: Config | dict | None = None, resume: str | Path | None = None,
          overrides: dict[str, dict[str, Any]] | None = None,
          callbacks: list[Callback] | None = None) -> TrainResult:
    """Train a model; return the run folder and its model files.

    ``config``: a Config or ``{section: {key: value}}``. ``resume``: a run folder to continue from its
    last checkpoint, with the same data and settings (``overrides`` may raise ``train.epochs`` or
    ``train.max_time``). ``callbacks``: extra Lightning callbacks. The run folder is locked while training
    writes it: a second ``--resume`` of it fails at once. (Recordings' detect settings are tuned after
    training by ``unetseg.audio.tune_run``; ``unetseg.train`` at the package root does both.)
    """
    with ExitStack() as locks:
        main = is_main_process()
        if resume is not None:
            setup = _resumed(Path(resume), overrides)
            if main:
                locks.enter_context(folder_lock(setup.run_dir))
        elif not main:  # a process that rank 0's launch started: rank 0's run folder, config and data
            given = copy.deepcopy(config) if isinstance(config, Config) else Config.from_dict(config or {})
            run_dir = shared_run_dir(given.train.runs_dir)
            setup = _Setup(*load_run(run_dir), run_dir=run_dir)
        else:
            setup = _new(config, overrides)
        return _fit(setup, locks, callbacks, main)


def _resumed(run_dir: Path, overrides: dict[str, dict[str, Any]] | None) -> _Setup:
    ckpt = run_dir / "weights" / "last.ckpt"
    if not ckpt.is_file():
        raise UnetsegError(f"{run_dir}: no weights/last.ckpt to resume from")
    check_checkpoint(ckpt)
    allowed = {"epochs", "max_time", "patience", "progress"}
    bad = {f"{s}.{k}" for s, kv in (overrides or {}).items() for k in kv if s != "train" or k not in allowed}
    if bad:
        raise UnetsegError(f"--resume keeps the run's settings; cannot change {', '.join(sorted(bad))}")
    cfg, info, spec = load_run(run_dir)
    cfg.update(overrides or {}, "command line")
    return _Setup(cfg, info, spec, run_dir=run_dir, ckpt=ckpt)


def _new(config: Config | dict | None, overrides: dict[str, dict[str, Any]] | None) -> _Setup:
    """A new run's settings and data, every file checked and the plan made, before any folder exists."""
    cfg = copy.deepcopy(config) if isinstance(config, Config) else Config.from_dict(config or {})
    if overrides:
        cfg.update(overrides, "command line")
    if not cfg.data.path:
        raise UnetsegError("no dataset given (--data PATH)")
    cfg.data.path = str(Path(cfg.data.path).resolve())  # the run resumes from any directory
    info = load_dataset(cfg.data.path, cfg.train.seed, cfg.data.val_fraction, cfg.data.test_fraction)
    stats = check_pairs(info.split("train") + info.split("valid"), info.decoder)
    if info.splits.get("test"):  # its masks too, so that a bad one is found now and not after training
        check_pairs(info.splits["test"], info.decoder)
    channels = stats.input_channels(info.source)
    counts = stats.total
    log.info("classes: %s", ", ".join(f"{c} {n / max(counts.sum(), 1):.1%}"
                                      for c, n in zip(info.classes, counts, strict=True)))
    choose_prior(cfg, info)  # the built-in prior for a dataset on its spectrogram
    init = init_settings(cfg, info)  # --init: the model file's architecture, before the plan
    resolve_instances(cfg, info)
    plan = None
    if cfg.train.plan:
        plan = make_plan(cfg, info, stats, cfg.data.channels or channels)
        log.info("%s", plan.summary())
    else:
        audio_model_defaults(cfg, info)
    return _Setup(cfg, info, init_input(resolve_input(cfg, info, channels), init), stats=stats, plan=plan)


def _fit(setup: _Setup, locks: ExitStack, callbacks: list[Callback] | None, main: bool) -> TrainResult:
    cfg, info, spec = setup.cfg, setup.info, setup.spec
    devices = lightning_devices(cfg.train.accelerator, cfg.train.devices)
    class_weights = parse_class_weights(cfg.train.class_weights, info.classes, info.binary)
    parse_loss(cfg.train.loss, info.binary)  # a bad --loss is refused before the run folder is made
    draw_weights = _sample_weights(cfg, info, setup.stats)

    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    model_cfg = vars(cfg.model)
    model = create_model(model_cfg, spec.channels, 1 if info.binary else info.num_classes)
    new = setup.run_dir is None
    meta = build_meta(model_cfg, info.classes, info.binary, info.colours, spec, cfg.train.threshold,
                      spectrogram=info.spectrogram, events=info.events)
    if new:  # the model file this run writes must load: its every field checked now, not after training
        check_meta(meta, f"{info.source} (the model file this run would write)")
        check_training_memory(model, spec.channels, spec.divisor, cfg.train.batch_size,
                              *_step_size(cfg, spec, setup.stats), cfg.train.max_memory)
        if cfg.train.init:
            load_init_weights(model, cfg.train.init)
        else:
            load_encoder_weights(model, model_cfg, spec.channels)
        # The run folder appears only once data and model are known to be good.
        setup.run_dir = make_run_dir(cfg, info, spec, setup.plan.to_dict() if setup.plan else None)
        locks.enter_context(folder_lock(setup.run_dir))
    run_dir = setup.run_dir
    assert run_dir is not None
    task = SegmentationTask(model, cfg, info.classes, info.binary, spec, class_weights)
    recorder = RunRecorder(run_dir, meta, cfg.train.monitor)
    try:
        stop = StopOnTerminate(run_dir)
        trainer = _trainer(cfg, run_dir, devices, recorder, [*(callbacks or []), stop], len(info.split("train")))
    except BaseException as e:
        if new:  # nothing was saved yet: the new run folder goes
            mark_failed(run_dir, e)
        raise
    world, rank = trainer.world_size, trainer.global_rank
    if new:
        write_config(run_dir, cfg, world)
        announce_run_dir(run_dir)  # for the processes a multi-process launch starts
    train_loader, val_loader = _loaders(cfg, info, spec, draw_weights, world, rank)
    try:
        with warnings.catch_warnings():
            # Resuming writes into the run's own checkpoint folder, which Lightning warns about.
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
            # Validation metrics are summed over the processes before they are logged: no sync_dist needed.
            warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
            with stop.installed():
                trainer.fit(task, train_loader, val_loader, ckpt_path=str(setup.ckpt) if setup.ckpt else None)
    except BaseException as e:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if not (isinstance(e, SIGTERMException) and stop.requested):  # SIGTERM: the state is saved, reported below
            if main:
                mark_failed(run_dir, e)
            raise
    finally:
        if main:
            forget_run_dir(run_dir)
    best = run_dir / "weights" / "best.safetensors"
    if stop.requested:  # SIGTERM: the state is in last.ckpt; nothing more is run
        return TrainResult(run_dir, best, run_dir / "weights" / "last.safetensors", recorder.best,
                           recorder.best_epoch, trainer.current_epoch, True, main=main, terminated=True)
    unvalidated = not best.exists() or recorder.validated_epoch != trainer.current_epoch  # --val-every
    if unvalidated and trainer.global_step > 0 and not trainer.interrupted:
        if trainer.current_epoch == 0:
            log.warning("the time budget ended inside the first epoch; validating the model as it stands")
        trainer.validate(task, val_loader, verbose=False)
    if main and not best.exists():
        raise UnetsegError(f"{run_dir}: training ended before the first validation; no model was saved")
    return TrainResult(run_dir, best, run_dir / "weights" / "last.safetensors", recorder.best,
                       recorder.best_epoch, trainer.current_epoch, trainer.interrupted, main=main)


def _trainer(cfg: Config, run_dir: Path, devices: Any, recorder: RunRecorder, extra: list[Callback],
             train_images: int) -> L.Trainer:
    """The Lightning Trainer of a run: checkpoints, schedule, early stopping, logger and processes."""
    t = cfg.train
    callbacks = [*extra, recorder, ModelCheckpoint(dirpath=run_dir / "weights", filename="last", monitor=None,
                                             save_top_k=1, enable_version_counter=False)]
    if t.scheduler == "warmup-cosine":
        callbacks.append(WarmupCosine(recorder, t))
    if t.patience > 0:
        callbacks.append(EarlyStopping(t.monitor, patience=t.patience, mode="max" if t.monitor == "val_iou" else "min"))
    trainer = L.Trainer(
        max_epochs=t.epochs, max_time=timedelta(minutes=t.max_time) if t.max_time else None,
        accelerator=t.accelerator, devices=devices, num_nodes=t.num_nodes, strategy=t.strategy,
        precision=t.precision, callbacks=callbacks,
        logger=TensorBoardLogger(str(run_dir), name="tensorboard", version=""),
        check_val_every_n_epoch=t.val_every, enable_progress_bar=t.progress, enable_model_summary=False,
        num_sanity_val_steps=0, use_distributed_sampler=False, default_root_dir=str(run_dir),
        log_every_n_steps=max(1, min(50, train_images // t.batch_size)),
    )
    trainer.log_every_n_steps = max(1, min(50, math.ceil(train_images / trainer.world_size) // t.batch_size))
    return trainer


def _loaders(cfg: Config, info: DatasetInfo, spec: InputSpec, draw_weights: np.ndarray | None, world: int,
             rank: int) -> tuple[DataLoader, DataLoader]:
    """This process's training loader (its share, shuffled or drawn by weight) and validation loader."""
    bs = cfg.train.batch_size
    workers = _workers(cfg.data.workers)
    augment = build_augment(cfg.data.crop, cfg.augment)
    head = has_head(vars(cfg.model))
    train_ds = SegmentationDataset(info.split("train"), info.decoder, spec, augment, instances=head)
    val_ds = SegmentationDataset(info.split("valid"), info.decoder, spec, instances=head)
    loader_args = {"num_workers": workers, "persistent_workers": workers > 0}
    generator = torch.Generator().manual_seed(cfg.train.seed + rank)
    if draw_weights is not None:
        sampling: dict[str, Any] = {"sampler": WeightedRandomSampler(
            draw_weights.tolist(), math.ceil(len(train_ds) / world), generator=generator)}
    elif world > 1:  # each process its share, reshuffled every epoch (Lightning sets the sampler's epoch)
        sampling = {"sampler": DistributedSampler(train_ds, world, rank, shuffle=True, seed=cfg.train.seed)}
    else:
        sampling = {"shuffle": True}
    # Native-size (pad) inputs may differ in shape from image to image: batches are padded to the largest.
    collate = PadCollate(spec) if spec.mode == "pad" else None
    share = math.ceil(len(train_ds) / world)
    train_loader = DataLoader(train_ds, batch_size=bs, drop_last=share > bs, collate_fn=collate, **sampling,
                              **loader_args)
    # Validation: every image exactly once over the processes (no padding repeats), counts summed after.
    val_loader = DataLoader(val_ds, batch_size=bs, collate_fn=collate, sampler=list(range(rank, len(val_ds), world)),
                            **loader_args)
    return train_loader, val_loader


def _sample_weights(cfg: Config, info: DatasetInfo, stats: PairStats | None) -> np.ndarray | None:
    """Per-image draw weights for ``sampler: rare`` (from the train masks), else None."""
    if cfg.train.sampler != "rare":
        return None
    n = len(info.split("train"))
    if stats is None:  # resuming: measure the train masks again
        stats = check_pairs(info.split("train"), info.decoder)
    counts = stats.counts[:n]
    share = (counts.sum(0) / max(counts.sum(), 1)).tolist()
    return sample_weights(counts > 0, share)


def lightning_devices(accelerator: str, devices: str) -> Any:
    """``train.devices`` as Lightning takes it, checked against the machine: ``auto``, a count, or GPU indices."""
    text = str(devices).strip()
    gpu = accelerator in ("gpu", "cuda")
    if gpu and not torch.cuda.is_available():
        raise UnetsegError(f"train.accelerator: {accelerator} but no CUDA GPU is available here; use cpu or auto")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise UnetsegError("train.accelerator: mps is not available here; use cpu or auto")
    if text == "auto":
        return "auto"
    available = torch.cuda.device_count() if gpu else os.cpu_count() or 1
    if text.isdigit() and 1 <= int(text) <= max(available, 1):
        return int(text)
    if gpu and all(v.strip().isdigit() and int(v) < available for v in text.split(",") if v.strip()) and "," in text:
        return text
    raise UnetsegError(f"train.devices: {text!r} must be auto, a count from 1 to {max(available, 1)}, or GPU indices "
                       "such as 0,2")


def _step_size(cfg: Config, spec: InputSpec, stats: PairStats | None) -> tuple[int, int]:
    """(height, width) of a training batch: the crop, else the input size, else the largest image padded."""
    if cfg.data.crop:
        return cfg.data.crop[0], cfg.data.crop[1]
    if spec.size:
        return spec.size
    sizes = stats.sizes if stats is not None else [(spec.divisor, spec.divisor)]
    d = spec.divisor
    return max(-(-h // d) * d for h, _ in sizes), max(-(-w // d) * d for _, w in sizes)


def _workers(n: int) -> int:
    return max(0, min(4, (os.cpu_count() or 1) - 1)) if n < 0 else n


def resolve_input(cfg: Config, info: DatasetInfo, channels: int | None = None) -> InputSpec:
    """Channels (``cfg.data.channels``, else ``channels`` as measured, else the first image's), size and
    normalisation for this dataset and model."""
    train = info.split("train")
    channels = cfg.data.channels or channels or image_channels(train[0].image)
    if channels not in (1, 3):
        raise UnetsegError(f"--channels must be 1 or 3, not {channels}")
    divisor = output_stride(vars(cfg.model))
    check_size(cfg.data.size, cfg.data.resize_mode, divisor)
    if cfg.data.crop and (cfg.data.crop[0] % divisor or cfg.data.crop[1] % divisor):
        raise UnetsegError(f"crop {cfg.data.crop[0]}x{cfg.data.crop[1]} is not divisible by {divisor}")
    norm = cfg.data.normalize
    if norm == "auto":
        norm = "imagenet" if cfg.model.encoder_weights and channels == 3 else "dataset"
    if norm == "imagenet":
        mean, std = (list(IMAGENET_MEAN), list(IMAGENET_STD)) if channels == 3 else ([0.449], [0.226])
    elif norm == "dataset":
        mean, std = mean_std(train, channels)
    else:
        mean, std = [0.0] * channels, [1.0] * channels
    size = tuple(cfg.data.size) if cfg.data.size and cfg.data.resize_mode != "pad" else None
    return InputSpec(channels, size, cfg.data.resize_mode, divisor, tuple(mean), tuple(std))


def resolve_instances(cfg: Config, info: DatasetInfo) -> None:
    """``model.instances: auto`` -> on where every image has instance targets, else off; ``on`` without them
    is refused."""
    if cfg.model.instances == "auto":
        cfg.model.instances = "on" if info.instances else "off"
        if info.instances:
            log.info("instance targets beside every mask: the model learns an instance head (--instances off "
                     "to leave it out)")
    elif cfg.model.instances == "on" and not info.instances:
        missing = next(p for ps in info.splits.values() for p in ps if p.instances is None)
        raise UnetsegError(f"{missing.image}: --instances on needs an instance-ID PNG for every image (an "
                           "instances/ folder beside masks/, a COCO json, or `unetseg audio dataset`)")


def audio_model_defaults(cfg: Config, info: DatasetInfo) -> None:
    """A spectrogram dataset's classic U-Net is narrower by default, for speed and accuracy together; a
    width the user gave is kept."""
    if info.spectrogram and cfg.model.arch == "classic" and "model.base_width" not in cfg.explicit:
        cfg.model.base_width = AUDIO_BASE_WIDTH
        log.info("spectrogram dataset: classic U-Net of base width %d (set --base-width to change)",
                 AUDIO_BASE_WIDTH)
