"""The LightningModule: loss, optimiser and per-epoch validation counts around any segmentation network."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from unetseg.core.config import Config
from unetseg.core.errors import UnetsegError
from unetseg.data.inputspec import InputSpec
from unetseg.evaluation.pixel_scores import confusion_counts, summarize
from unetseg.inference.classes import activate, to_classes
from unetseg.instances.centres import has_head
from unetseg.training.losses import InstanceLoss, SegmentationLoss


class SegmentationTask(L.LightningModule):
    """Loss, optimisation and per-epoch validation metrics around any segmentation network."""

    def __init__(self, model: nn.Module, cfg: Config, classes: list[str], binary: bool,
                 spec: InputSpec, class_weights: list[float] | None = None) -> None:
        super().__init__()
        self.model, self.cfg, self.classes, self.binary, self.spec = model, cfg, classes, binary, spec
        self.loss_fn = SegmentationLoss(cfg.train.loss, binary, class_weights)
        self.outputs = 1 if binary else len(classes)  # class maps; the instance head's channels follow
        self.instance_loss = InstanceLoss() if has_head(vars(cfg.model)) else None
        self.instance_weight = cfg.train.instance_weight
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

    def loss(self, logits: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The class maps' loss, plus the instance head's where the model has one."""
        loss = self.loss_fn(logits[:, :self.outputs], batch["mask"])
        if self.instance_loss is not None:
            loss = loss + self.instance_weight * self.instance_loss(logits[:, self.outputs:], batch["heat"],
                                                                    batch["edges"], batch["centres"])
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch["image"]), batch)
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
        self._val_loss[0] += self.loss(logits, batch).item() * n
        logits = logits[:, :self.outputs]
        self._val_loss[1] += n
        pred = to_classes(activate(logits.float(), self.binary), self.binary, self.cfg.train.threshold, axis=1)
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
