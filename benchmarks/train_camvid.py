"""Train on camvid-mini for a fixed CPU time budget; report test mIoU (classes 0-10, void ignored) and
training images/s. Prints a summary and writes JSON (benchmarks/results/train_camvid.json).

    .venv/bin/python benchmarks/train_camvid.py --minutes 15 --arch unet --encoder resnet18
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from unetseg.cli.common import configure_logging
from unetseg.config import Config
from unetseg.evaluate import evaluate
from unetseg.fileio import write_json
from unetseg.train import train

ROOT = Path(__file__).resolve().parents[1]


class StepTimer(Callback):
    """Seconds spent in training steps (forward, backward, optimiser; data loading excluded) and images seen."""

    def __init__(self) -> None:
        self.seconds, self.images, self._start = 0.0, 0, 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: ANN001
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.seconds += time.perf_counter() - self._start
        self.images += int(batch["image"].shape[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=15.0, help="training time budget")
    p.add_argument("--arch", default="unet")
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--base-width", type=int, default=32, help="classic U-Net only")
    p.add_argument("--crop", default="256x256", help="random training crop")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "bench"))
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "train_camvid.json"))
    args = p.parse_args()
    configure_logging()

    cfg = Config.from_dict({
        "data": {"path": str(ROOT / "examples" / "camvid-mini.yaml"), "resize_mode": "pad", "size": None,
                 "crop": args.crop},
        "model": {"arch": args.arch, "encoder": args.encoder, "base_width": args.base_width},
        "augment": {"hflip": 0.5, "rotate": 10, "scale": 0.15},
        "train": {"name": f"camvid-{args.arch}-{args.encoder}", "runs_dir": args.runs_dir, "epochs": 10_000,
                  "max_time": args.minutes, "batch_size": args.batch_size, "lr": args.lr, "scheduler": "plateau",
                  "patience": 0, "progress": False},
    })
    timer = StepTimer()
    start = time.perf_counter()
    result = train(cfg, callbacks=[timer])
    wall = time.perf_counter() - start
    ev = evaluate(result.best_model, cfg.data.path, "test", result.run_dir / "test", figures=4)
    report = {
        "benchmark": "train_camvid",
        "command": "python benchmarks/train_camvid.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k not in ("runs_dir", "output")),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "model": f"{args.arch} / {args.encoder}" if args.arch != "classic" else f"classic U-Net w{args.base_width}",
        "budget_minutes": args.minutes,
        "wall_seconds": round(wall, 1),
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "train_images_per_s": round(timer.images / timer.seconds, 2) if timer.seconds else None,
        "test_miou": ev.metrics["iou"],
        "test_pixel_accuracy": ev.metrics["accuracy"],
        "test_iou_per_class": {c: s["iou"] for c, s in ev.metrics["per_class"].items()},
        "run_dir": str(result.run_dir),
    }
    write_json(args.output, report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
