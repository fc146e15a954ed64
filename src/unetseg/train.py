"""Training on PyTorch Lightning: the LightningModule, the run folder, and ``train()``.

A run folder ``<runs_dir>/<name>[-N]/`` holds::

    config.yaml            the resolved configuration (rerun with --config)
    dataset.json           classes, input normalisation and the exact files of each split
    metrics.csv            one row per epoch; history.png plots it
    val_predictions/       a grid of validation predictions per epoch
    weights/best.safetensors, weights/last.safetensors   model files (see modelfile.py)
    weights/last.ckpt      full training state for --resume
    tensorboard/           TensorBoard logs
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import math
import os
import shutil
import time
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
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, WeightedRandomSampler

from .config import Config
from .data.dataset import PadCollate, SegmentationDataset, mean_std
from .data.inputspec import InputSpec
from .data.io import MaskDecoder, image_channels
from .data.spec import DatasetInfo, Pair, PairStats, check_pairs, load_dataset
from .data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_augment, check_size
from .distributed import announce_run_dir, forget_run_dir, is_main_process, shared_run_dir
from .errors import UnetsegError
from .fileio import new_run_dir, write_json, write_text
from .guard import folder_lock
from .inference.memory import check_training_memory
from .losses import SegmentationLoss, parse_class_weights
from .metrics import confusion_counts, summarize
from .modelfile import build_meta, save_model_file
from .models import create_model, load_encoder_weights, output_stride
from .plan import AUDIO_BASE_WIDTH, make_plan, sample_weights
from .viz import colourize, panel, plot_history, save_rgb, stack_rows, to_uint8_rgb

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


def predict_classes(logits: torch.Tensor, binary: bool, threshold: float) -> torch.Tensor:
    """Logits (N, C, H, W) -> class indices (N, H, W)."""
    if binary:
        return (torch.sigmoid(logits[:, 0]) > threshold).long()
    return logits.argmax(dim=1)


class SegmentationTask(L.LightningModule):
    """Loss, optimisation and per-epoch validation metrics around any segmentation network."""

    def __init__(self, model: nn.Module, cfg: Config, classes: list[str], binary: bool,
                 spec: InputSpec, class_weights: list[float] | None = None) -> None:
        super().__init__()
        self.model, self.cfg, self.classes, self.binary, self.spec = model, cfg, classes, binary, spec
        self.loss_fn = SegmentationLoss(cfg.train.loss, binary, class_weights)
        self.channels_last = cfg.train.channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self._reset_epoch_state()
        self.last_val: dict[str, Any] = {}
        self.grid_samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def _reset_epoch_state(self) -> None:
        self._train_loss = [0.0, 0]
        self._val_loss = [0.0, 0]
        self._val_counts = torch.zeros(len(self.classes), 4, dtype=torch.long)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss_fn(self(batch["image"]), batch["mask"])
        if not torch.isfinite(loss):
            lr = self.optimizers().param_groups[0]["lr"]
            raise UnetsegError(
                f"training loss became {loss.item()} at epoch {self.current_epoch + 1}, step {self.global_step}: "
                f"training diverged; lower the learning rate (--lr, now {lr:g}) or check the images for NaN"
            )
        n = batch["image"].shape[0]
        self._train_loss[0] += loss.item() * n
        self._train_loss[1] += n
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=n)
        return loss

    def on_train_epoch_start(self) -> None:
        self._train_loss = [0.0, 0]

    def on_validation_epoch_start(self) -> None:
        self._val_loss = [0.0, 0]
        self._val_counts = torch.zeros(len(self.classes), 4, dtype=torch.long)
        self.grid_samples = []

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        logits = self(batch["image"])
        mask = batch["mask"]
        n = mask.shape[0]
        self._val_loss[0] += self.loss_fn(logits, mask).item() * n
        self._val_loss[1] += n
        pred = predict_classes(logits, self.binary, self.cfg.train.threshold)
        self._val_counts += confusion_counts(pred, mask, len(self.classes)).sum(0).cpu()
        if len(self.grid_samples) < self.cfg.train.val_grid:
            images = batch["image"].float().cpu().numpy().transpose(0, 2, 3, 1)
            images = images * np.asarray(self.spec.std, np.float32) + np.asarray(self.spec.mean, np.float32)
            for i in range(min(n, self.cfg.train.val_grid - len(self.grid_samples))):
                self.grid_samples.append((images[i], mask[i].cpu().numpy(), pred[i].cpu().numpy().astype(np.uint8)))

    def on_validation_epoch_end(self) -> None:
        counts = self._val_counts.to(self.device)
        loss = torch.tensor(self._val_loss, dtype=torch.float64, device=self.device)
        if self.trainer.world_size > 1:  # every process validated its own images: sum (exact for counts)
            counts = self.trainer.strategy.reduce(counts, reduce_op="sum")
            loss = self.trainer.strategy.reduce(loss, reduce_op="sum")
        summary = summarize(counts.cpu().numpy(), self.classes, self.binary)
        val_loss = float(loss[0] / max(loss[1], 1))
        per_class_counts = counts.cpu().numpy()
        self.last_val = {"val_loss": val_loss, **{f"val_{k}": v for k, v in summary.items() if k != "per_class"},
                         "per_class": summary["per_class"],
                         "counts": {c: dict(zip(("tp", "fp", "tn", "fn"), map(int, per_class_counts[i]), strict=True))
                                    for i, c in enumerate(self.classes)}}
        metrics = {"val_loss": val_loss}
        for key in ("iou", "dice", "precision", "recall", "accuracy"):
            value = summary[key]
            # An undefined score (no foreground anywhere in truth or prediction) monitors as 0.
            metrics[f"val_{key}"] = 0.0 if value is None else value
        for cls, scores in summary["per_class"].items():
            if scores["iou"] is not None:
                metrics[f"val_iou/{cls}"] = scores["iou"]
        self.log("val_iou", metrics.pop("val_iou"), prog_bar=True)
        self.log_dict(metrics)

    @property
    def train_loss(self) -> float:
        return self._train_loss[0] / self._train_loss[1] if self._train_loss[1] else math.nan

    def configure_optimizers(self) -> Any:
        t = self.cfg.train
        params = self.model.parameters()
        if t.optimizer == "adam":
            opt = torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
        elif t.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay, nesterov=True)
        else:
            opt = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
        if t.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, t.epochs), eta_min=t.lr * 0.01)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        if t.scheduler == "plateau":
            mode = "max" if t.monitor == "val_iou" else "min"
            sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode=mode, factor=0.5,
                                                               patience=max(1, t.patience // 3))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": t.monitor}}
        return opt


class RunRecorder(Callback):
    """After each validation: metrics.csv, history.png, the prediction grid, best and last model files."""

    def __init__(self, run_dir: Path, meta: dict[str, Any], monitor: str) -> None:
        self.run_dir, self.meta, self.monitor = run_dir, meta, monitor
        self.maximize = monitor != "val_loss"
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.started = time.monotonic()
        self.elapsed_before = 0.0
        self.validated_epoch = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "elapsed": self._elapsed()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")
        self.elapsed_before = float(state.get("elapsed", 0.0))

    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def on_validation_end(self, trainer: L.Trainer, task: SegmentationTask) -> None:
        if trainer.sanity_checking:
            return
        # Inside fit, the epoch being run; after fit (a final validation), the epochs completed.
        epoch = max(1, trainer.current_epoch + (0 if trainer.state.fn == "validate" else 1))
        if epoch == self.validated_epoch:
            return
        self.validated_epoch = epoch  # on every process, so that all agree on a final validation
        if not trainer.is_global_zero:
            return
        val = task.last_val
        row = {"epoch": epoch, "train_loss": _fmt(task.train_loss)}
        row.update({k: _fmt(v) for k, v in val.items() if k not in ("per_class", "counts")})
        if not task.binary:
            row.update({f"iou_{c}": _fmt(s["iou"]) for c, s in val["per_class"].items()})
        row["lr"] = _fmt(trainer.optimizers[0].param_groups[0]["lr"]) if trainer.optimizers else ""
        row["time_s"] = round(self._elapsed(), 1)
        rows = _append_csv(self.run_dir / "metrics.csv", row)
        plot_history(rows, self.run_dir / "history.png")
        self._save_grid(task, epoch)

        weights = self.run_dir / "weights"
        training = {"epoch": epoch, "metrics": {k: v for k, v in val.items() if k not in ("per_class", "counts")},
                    "counts": val["counts"]}
        meta = {**self.meta, "training": training}
        save_model_file(weights / "last.safetensors", task.model, meta)
        score = val.get(self.monitor)
        if score is not None and (self.best is None or (score > self.best if self.maximize else score < self.best)):
            self.best, self.best_epoch = float(score), epoch
            save_model_file(weights / "best.safetensors", task.model, meta)

    def _save_grid(self, task: SegmentationTask, epoch: int) -> None:
        if not task.grid_samples:
            return
        colours = [tuple(c) for c in self.meta["colours"]]
        rows = [panel([to_uint8_rgb(img), colourize(truth, colours), colourize(pred, colours)],
                      ["image", "truth", f"prediction (epoch {epoch})"], height=160)
                for img, truth, pred in task.grid_samples]
        save_rgb(self.run_dir / "val_predictions" / f"epoch_{epoch:03d}.png", stack_rows(rows))


class WarmupCosine(Callback):
    """Learning rate from 1% up to ``lr`` over the first ``warmup`` share of training, then a cosine down to
    1%. With ``max_time`` the share is of the time budget (elapsed time, resumes included), so the decay
    ends with the budget however fast the machine is; otherwise of ``epochs`` x steps per epoch."""

    def __init__(self, recorder: RunRecorder, t: Any) -> None:
        self.recorder, self.lr, self.warmup, self.epochs = recorder, t.lr, t.warmup, t.epochs
        self.budget_s = t.max_time * 60 if t.max_time else None
        self.total_steps = 1

    def on_train_start(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        self.total_steps = max(1, self.epochs * int(trainer.num_training_batches))

    def factor(self, progress: float) -> float:
        progress = min(max(progress, 0.0), 1.0)
        if progress < self.warmup:
            return 0.01 + 0.99 * progress / self.warmup
        decay = (progress - self.warmup) / max(1e-9, 1 - self.warmup)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * decay))

    def on_train_batch_start(self, trainer: L.Trainer, task: L.LightningModule, batch: Any, batch_idx: int) -> None:
        progress = (self.recorder._elapsed() / self.budget_s if self.budget_s
                    else trainer.global_step / self.total_steps)
        for group in trainer.optimizers[0].param_groups:
            group["lr"] = self.lr * self.factor(progress)


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


def _tune_events(run_dir: Path, info: DatasetInfo) -> None:
    """Annotated recordings: tune detect's settings on the validation split (time-only labels: threshold,
    minimum duration, merge gap; boxes: threshold, granularity); store them in both model files and in
    ``detect_tuning.json``."""
    from .audio.tuning import store_tuned, tune_box_events, tune_time_events

    weights = run_dir / "weights"
    tune = tune_time_events if info.events == "time" else tune_box_events
    tuned = tune(weights / "best.safetensors", info)
    if tuned is None:
        return
    store_tuned([weights / "best.safetensors", weights / "last.safetensors"], tuned)
    write_json(run_dir / "detect_tuning.json", tuned)
    settings = ", ".join(f"{k} {tuned[k]}" for k in ("threshold", "granularity", "min_duration", "merge_gap")
                         if k in tuned)
    log.info("detect settings tuned on the validation split: %s (F1 %.3f)", settings, tuned["f1"])


def _fmt(x: Any) -> Any:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return round(float(x), 6)


def _append_csv(path: Path, row: dict[str, Any]) -> list[dict[str, Any]]:
    """Rewrite metrics.csv with ``row`` replacing any row of the same epoch (a resumed run)."""
    rows: list[dict[str, Any]] = []
    if path.exists():
        with path.open(newline="") as f:
            rows = [r for r in csv.DictReader(f) if int(r["epoch"]) < row["epoch"]]
    rows.append(row)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())
    return rows


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


def audio_model_defaults(cfg: Config, info: DatasetInfo) -> None:
    """A spectrogram dataset's classic U-Net is narrower by default, for speed and accuracy together; a
    width the user gave is kept."""
    if info.spectrogram and cfg.model.arch == "classic" and "model.base_width" not in cfg.explicit:
        cfg.model.base_width = AUDIO_BASE_WIDTH
        log.info("spectrogram dataset: classic U-Net of base width %d (set --base-width to change)",
                 AUDIO_BASE_WIDTH)


def _dataset_record(info: DatasetInfo, spec: InputSpec) -> dict[str, Any]:
    d = info.decoder
    return {
        "source": str(info.source), "name": info.name, "classes": info.classes, "binary": info.binary,
        "spectrogram": info.spectrogram, "events": info.events,
        "colours": [list(c) for c in info.colours],
        "decoder": {"mode": d.mode, "num_classes": d.num_classes, "ignore_value": d.ignore_value,
                    "palette": d.palette, "snap": d.snap},
        "input": spec.to_dict(),
        "splits": {s: [[str(p.image.resolve()), str(p.mask.resolve())] for p in pairs]
                   for s, pairs in info.splits.items()},
    }


def _info_from_record(rec: dict[str, Any], source: Path) -> tuple[DatasetInfo, InputSpec]:
    d = rec["decoder"]
    ignore = tuple(d["ignore_value"]) if isinstance(d["ignore_value"], list) else d["ignore_value"]
    palette = tuple(tuple(c) for c in d["palette"]) if d["palette"] else None
    decoder = MaskDecoder(d["mode"], d["num_classes"], ignore, palette, bool(d.get("snap", False)))
    splits = {s: [Pair(Path(i), Path(m)) for i, m in pairs] for s, pairs in rec["splits"].items()}
    info = DatasetInfo(rec["name"], source, splits, rec["classes"], decoder, [tuple(c) for c in rec["colours"]],
                       rec.get("spectrogram"), rec.get("events"))
    return info, InputSpec.from_dict(rec["input"])


def _load_run(run_dir: Path) -> tuple[Config, DatasetInfo, InputSpec]:
    """A run folder's settings, dataset (its exact files) and input, as the run recorded them."""
    cfg = Config.from_yaml(run_dir / "config.yaml")
    info, spec = _info_from_record(json.loads((run_dir / "dataset.json").read_text()), Path(cfg.data.path))
    return cfg, info, spec


def check_checkpoint(path: Path) -> None:
    """Refuse, in one line, a ``last.ckpt`` that is not a training checkpoint (loaded weights-only: a pickle
    that would run code is never executed)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - torch raises many kinds for foreign files
        reason = " ".join(str(e).split())[:160]
        raise UnetsegError(f"{path}: not a training checkpoint that loads safely ({reason})") from None
    if not isinstance(state, dict) or "state_dict" not in state or "epoch" not in state:
        raise UnetsegError(f"{path}: not a Lightning training checkpoint (no state_dict or epoch)")


def _mark_failed(run_dir: Path, error: BaseException) -> None:
    """A run that stopped on an error: removed when it saved nothing, else marked with ``FAILED.txt`` (its
    last checkpoint can still resume it)."""
    if not (run_dir / "weights" / "last.ckpt").exists() and not (run_dir / "metrics.csv").exists():
        shutil.rmtree(run_dir, ignore_errors=True)
        log.info("removed the run folder %s: the run failed before saving anything", run_dir)
        return
    write_text(run_dir / "FAILED.txt", f"{type(error).__name__}: {' '.join(str(error).split())}\n")


def train(config: Config | dict | None = None, resume: str | Path | None = None,
          overrides: dict[str, dict[str, Any]] | None = None,
          callbacks: list[Callback] | None = None) -> TrainResult:
    """Train a model; return the run folder and its model files.

    ``config``: a Config or ``{section: {key: value}}``. ``resume``: a run folder to continue from its
    last checkpoint, with the same data and settings (``overrides`` may raise ``train.epochs`` or
    ``train.max_time``). ``callbacks``: extra Lightning callbacks. The run folder is locked while training
    writes it: a second ``--resume`` of it fails at once.
    """
    with ExitStack() as locks:
        return _train(locks, config, resume, overrides, callbacks)


def _train(locks: ExitStack, config: Config | dict | None, resume: str | Path | None,
           overrides: dict[str, dict[str, Any]] | None, callbacks: list[Callback] | None) -> TrainResult:
    main = is_main_process()
    if resume is not None:
        run_dir = Path(resume)
        ckpt = run_dir / "weights" / "last.ckpt"
        if not ckpt.is_file():
            raise UnetsegError(f"{run_dir}: no weights/last.ckpt to resume from")
        check_checkpoint(ckpt)
        if main:
            locks.enter_context(folder_lock(run_dir))
        allowed = {"epochs", "max_time", "patience", "progress"}
        bad = {f"{s}.{k}" for s, kv in (overrides or {}).items() for k in kv if s != "train" or k not in allowed}
        if bad:
            raise UnetsegError(f"--resume keeps the run's settings; cannot change {', '.join(sorted(bad))}")
        cfg, info, spec = _load_run(run_dir)
        cfg.update(overrides or {}, "command line")
        stats, plan = None, None
    elif not main:  # a process that rank 0's launch started: rank 0's run folder, config and data
        given = copy.deepcopy(config) if isinstance(config, Config) else Config.from_dict(config or {})
        run_dir = shared_run_dir(given.train.runs_dir)
        cfg, info, spec = _load_run(run_dir)
        stats, plan, ckpt = None, None, None
    else:
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
        plan = None
        if cfg.train.plan:
            plan = make_plan(cfg, info, stats, cfg.data.channels or channels)
            log.info("%s", plan.summary())
        else:
            audio_model_defaults(cfg, info)
        spec = resolve_input(cfg, info, channels)
        ckpt = None
    devices = lightning_devices(cfg.train.accelerator, cfg.train.devices)
    class_weights = parse_class_weights(cfg.train.class_weights, info.classes, info.binary)
    draw_weights = _sample_weights(cfg, info, stats)

    L.seed_everything(cfg.train.seed, workers=True, verbose=False)
    outputs = 1 if info.binary else info.num_classes
    model_cfg = vars(cfg.model)
    model = create_model(model_cfg, spec.channels, outputs)
    if ckpt is None and main:
        check_training_memory(model, spec.channels, spec.divisor, cfg.train.batch_size,
                              *_step_size(cfg, spec, stats), cfg.train.max_memory)
        load_encoder_weights(model, model_cfg, spec.channels)
        # The run folder appears only once data and model are known to be good.
        run_dir = new_run_dir(cfg.train.runs_dir, cfg.train.name or info.name)
        locks.enter_context(folder_lock(run_dir))
        write_text(run_dir / "config.yaml", cfg.to_yaml())
        write_json(run_dir / "dataset.json", _dataset_record(info, spec))
        if plan is not None:
            write_json(run_dir / "plan.json", plan.to_dict())
        announce_run_dir(run_dir)  # for the processes a multi-process launch starts
    task = SegmentationTask(model, cfg, info.classes, info.binary, spec, class_weights)

    meta = build_meta(model_cfg, info.classes, info.binary, info.colours, spec, cfg.train.threshold,
                      spectrogram=info.spectrogram, events=info.events)
    recorder = RunRecorder(run_dir, meta, cfg.train.monitor)
    callbacks = [
        *(callbacks or []),
        recorder,
        ModelCheckpoint(dirpath=run_dir / "weights", filename="last", monitor=None, save_top_k=1,
                        enable_version_counter=False),
    ]
    if cfg.train.scheduler == "warmup-cosine":
        callbacks.append(WarmupCosine(recorder, cfg.train))
    if cfg.train.patience > 0:
        callbacks.append(EarlyStopping(cfg.train.monitor, patience=cfg.train.patience,
                                       mode="max" if cfg.train.monitor == "val_iou" else "min"))
    bs = cfg.train.batch_size
    trainer = L.Trainer(
        max_epochs=cfg.train.epochs,
        max_time=timedelta(minutes=cfg.train.max_time) if cfg.train.max_time else None,
        accelerator=cfg.train.accelerator, devices=devices, num_nodes=cfg.train.num_nodes,
        strategy=cfg.train.strategy, precision=cfg.train.precision,
        callbacks=callbacks, logger=TensorBoardLogger(str(run_dir), name="tensorboard", version=""),
        check_val_every_n_epoch=cfg.train.val_every, enable_progress_bar=cfg.train.progress,
        enable_model_summary=False, num_sanity_val_steps=0, use_distributed_sampler=False,
        log_every_n_steps=max(1, min(50, len(info.split("train")) // bs)), default_root_dir=str(run_dir),
    )
    world, rank = trainer.world_size, trainer.global_rank
    trainer.log_every_n_steps = max(1, min(50, math.ceil(len(info.split("train")) / world) // bs))
    if main and ckpt is None:
        write_text(run_dir / "config.yaml", cfg.to_yaml() + f"# processes: {world}; train.batch_size is per process "
                   f"(a step sees {world} x {bs} = {world * bs} images)\n")

    workers = _workers(cfg.data.workers)
    augment = build_augment(cfg.data.crop, **vars(cfg.augment))
    train_ds = SegmentationDataset(info.split("train"), info.decoder, spec, augment)
    val_ds = SegmentationDataset(info.split("valid"), info.decoder, spec)
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
    try:
        with warnings.catch_warnings():
            # Resuming writes into the run's own checkpoint folder, which Lightning warns about.
            warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
            # Validation metrics are summed over the processes before they are logged: no sync_dist needed.
            warnings.filterwarnings("ignore", message=".*sync_dist=True.*")
            trainer.fit(task, train_loader, val_loader, ckpt_path=str(ckpt) if ckpt else None)
    except BaseException as e:
        if main:
            _mark_failed(run_dir, e)
        raise
    finally:
        if main:
            forget_run_dir(run_dir)
    best = run_dir / "weights" / "best.safetensors"
    unvalidated = not best.exists() or recorder.validated_epoch != trainer.current_epoch  # --val-every
    if unvalidated and trainer.global_step > 0 and not trainer.interrupted:
        if trainer.current_epoch == 0:
            log.warning("the time budget ended inside the first epoch; validating the model as it stands")
        trainer.validate(task, val_loader, verbose=False)
    if not main:
        return TrainResult(run_dir, best, run_dir / "weights" / "last.safetensors", recorder.best,
                           recorder.best_epoch, trainer.current_epoch, trainer.interrupted, main=False)
    if not best.exists():
        raise UnetsegError(f"{run_dir}: training ended before the first validation; no model was saved")
    if info.spectrogram and info.events in ("time", "box"):
        _tune_events(run_dir, info)
    return TrainResult(run_dir, best, run_dir / "weights" / "last.safetensors", recorder.best,
                       recorder.best_epoch, trainer.current_epoch, trainer.interrupted)
