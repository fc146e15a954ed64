"""Lightning callbacks of a run: the recorder of its folder (metrics, plots, model files) and the schedule."""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from unetseg.core.fileio import write_text
from unetseg.evaluation.figures import colourize, panel, plot_history, save_rgb, stack_rows, to_uint8_rgb
from unetseg.models.modelfile import save_model_file
from unetseg.training.task import SegmentationTask


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


class StopOnTerminate(Callback):
    """SIGTERM (a scheduler's pre-emption, ``kill``) during training: the step in progress ends, the full
    training state is saved to ``weights/last.ckpt`` (atomically) and training stops, so that
    ``train --resume`` continues the run even before its first validation."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir, self.requested = run_dir, False

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Catch SIGTERM while the block (``trainer.fit``) runs; the previous handler afterwards."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGTERM, self._request)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _request(self, _signum: int, _frame: object) -> None:
        self.requested = True

    def on_train_batch_end(self, trainer: L.Trainer, task: L.LightningModule, *args: Any) -> None:
        if not self.requested or trainer.should_stop:
            return
        from unetseg.core.fileio import atomic_write

        if trainer.is_global_zero:
            atomic_write(self.run_dir / "weights" / "last.ckpt", lambda p: trainer.save_checkpoint(p))
        trainer.should_stop = True
