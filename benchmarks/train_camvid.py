"""CamVid-mini under a CPU time budget: the plain command against the course-notebook recipe.

1. ``unetseg train --data examples/camvid-mini.yaml --max-time MIN``: nothing else given; the training plan
   chooses geometry, model, precision, loss and weights, sampling and schedule (its plan.json is kept).
2. The course-notebook recipe at the same budget in the same run: plain U-Net (classic, width 32, no
   dropout), CE, 256x256 resize, no augmentation, Adam 1e-3, no schedule, fp32, batch 8.
3. Training-loop speed on one model and batch (classic U-Net w32, 256x256, batch 8): a notebook's plain
   PyTorch loop (fp32, DataLoader without workers) against ours (Lightning, the plan's precision, and fp32),
   images per second of training including data loading, taken in the same run.

Test mIoU over classes 0-10 (void ignored). Prints a summary and writes JSON
(benchmarks/results/train_camvid.json).

    .venv/bin/python benchmarks/train_camvid.py --minutes 10
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader

from unetseg import train
from unetseg.cli.common import configure_logging
from unetseg.core.config import Config
from unetseg.core.fileio import write_json
from unetseg.data.dataset import SegmentationDataset
from unetseg.data.discover import load_dataset
from unetseg.evaluation.evaluate_split import evaluate
from unetseg.models import create_model
from unetseg.plan import machine
from unetseg.training import resolve_input

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "camvid-mini.yaml"
NOTEBOOK = {
    "data": {"size": [256, 256], "resize_mode": "resize"},
    "model": {"arch": "classic", "base_width": 32, "depth": 4, "dropout": 0.0},
    "augment": {"enabled": False},
    "train": {"plan": False, "loss": "ce", "optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0,
              "scheduler": "none", "patience": 0, "batch_size": 8, "precision": "32-true", "epochs": 10_000},
}


class LoopTimer(Callback):
    """Seconds of training epochs (data loading included, validation excluded) and images seen."""

    def __init__(self) -> None:
        self.seconds, self.images, self._start = 0.0, 0, 0.0

    def on_train_epoch_start(self, trainer, module) -> None:  # noqa: ANN001
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        self.images += int(batch["image"].shape[0])
        self._last = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:  # noqa: ANN001
        self.seconds += self._last - self._start

    @property
    def rate(self) -> float | None:
        return round(self.images / self.seconds, 2) if self.seconds else None


def notebook_loop(steps: int) -> float:
    """A course notebook's training loop: images per second over ``steps`` steps after one warm-up step."""
    cfg = Config.from_dict({"data": {"path": str(DATA), **NOTEBOOK["data"]}, "model": NOTEBOOK["model"]})
    info = load_dataset(DATA)
    spec = resolve_input(cfg, info)
    loader = DataLoader(SegmentationDataset(info.split("train"), info.decoder, spec), batch_size=8, shuffle=True)
    model = create_model(vars(cfg.model), 3, info.num_classes)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=255)
    model.train()
    images, start = 0, None
    while images < (steps + 1) * 8:
        for batch in loader:
            out = model(batch["image"])
            loss = loss_fn(out, batch["mask"].long())
            opt.zero_grad()
            loss.backward()
            opt.step()
            if start is None:
                start = time.perf_counter()  # after the warm-up step
            else:
                images += batch["image"].shape[0]
            if images >= steps * 8:
                break
    return round(images / (time.perf_counter() - start), 2)


def our_loop(runs: Path, precision: str | None, epochs: int) -> float | None:
    """Our loop (Lightning) on the notebook's model and batch; ``precision`` None lets the plan choose it."""
    train_cfg: dict[str, Any] = {"name": f"loop-{precision or 'plan'}", "runs_dir": str(runs), "epochs": epochs,
                                 "batch_size": 8, "progress": False, "val_every": 1000}
    if precision:
        train_cfg["precision"] = precision
    timer = LoopTimer()
    train(Config.from_dict({"data": {"path": str(DATA), **NOTEBOOK["data"]}, "model": NOTEBOOK["model"],
                            "train": train_cfg}), callbacks=[timer])
    return timer.rate


def run_recipe(name: str, cfg: Config) -> dict[str, Any]:
    start = time.perf_counter()
    result = train(cfg)
    wall = time.perf_counter() - start
    ev = evaluate(result.best_model, str(DATA), "test", result.run_dir / "test", figures=4)
    per_class = {c: s["iou"] for c, s in ev.metrics["per_class"].items()}
    plan = result.run_dir / "plan.json"
    return {"wall_seconds": round(wall, 1), "epochs": result.epochs_run, "best_epoch": result.best_epoch,
            "test_miou": ev.metrics["iou"], "test_pixel_accuracy": ev.metrics["accuracy"],
            "classes_at_zero": [c for c, v in per_class.items() if not v], "test_iou_per_class": per_class,
            "plan": json.loads(plan.read_text())["choices"] if plan.is_file() else None,
            "run_dir": str(result.run_dir)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="training time budget per recipe")
    p.add_argument("--recipes", default="plan,notebook")
    p.add_argument("--loop-epochs", type=int, default=1, help="epochs of our loop in the speed comparison")
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "bench-camvid"))
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "train_camvid.json"))
    args = p.parse_args()
    configure_logging()
    runs = Path(args.runs_dir)
    steps = 15 * args.loop_epochs
    loop = {"model": "classic U-Net w32, 256x256, batch 8", "notebook_fp32": notebook_loop(steps),
            "ours_plan_precision": our_loop(runs, None, args.loop_epochs),
            "ours_fp32": our_loop(runs, "32-true", args.loop_epochs)}
    loop["ratio_plan"] = round(loop["ours_plan_precision"] / loop["notebook_fp32"], 2)
    loop["ratio_fp32"] = round(loop["ours_fp32"] / loop["notebook_fp32"], 2)
    print(json.dumps({"loop_images_per_s": loop}, indent=2))

    results = {}
    for name in args.recipes.split(","):
        common = {"data": {"path": str(DATA)}, "train": {"name": f"camvid-{name}", "runs_dir": str(runs),
                                                          "max_time": args.minutes, "progress": False}}
        if name == "plan":
            cfg = Config.from_dict(common)
        else:
            cfg = Config.from_dict(NOTEBOOK)
            cfg.update(common)
        results[name] = run_recipe(name, cfg)
        print(json.dumps({name: {k: v for k, v in results[name].items() if k != "plan"}}, indent=2))
    report = {
        "benchmark": "train_camvid",
        "command": f"python benchmarks/train_camvid.py --minutes {args.minutes:g}",
        "machine": {**machine(), "cpu_count": __import__("os").cpu_count()},
        "budget_minutes": args.minutes,
        "loop_images_per_s": loop,
        "results": results,
    }
    write_json(args.output, report)
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
