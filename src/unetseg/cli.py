"""The ``unetseg`` command: each subcommand parses its flags and calls the library."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import __version__
from .audio.cli import add_audio_commands
from .config import Config, add_config_arguments, overrides_from_args
from .errors import UnetsegError

log = logging.getLogger("unetseg")


def _add_postprocess(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("post-processing")
    g.add_argument("--threshold", type=float, help="binary: foreground probability cut-off [default: the model's]")
    g.add_argument("--open", type=int, default=0, metavar="PX", help="morphological opening radius in pixels")
    g.add_argument("--close", type=int, default=0, metavar="PX", help="morphological closing radius in pixels")
    g.add_argument("--min-size", type=int, default=0, metavar="N", help="remove regions under N pixels")
    g.add_argument("--fill-holes", action="store_true", help="fill holes inside regions")


def add_device_args(p: argparse.ArgumentParser) -> None:
    """--device, --backend and --threads, for every command that runs a model."""
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto [default: auto]")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime"),
                   help="torch (channels_last) or onnxruntime (CPU) [default: torch]")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for inference [default: all]")


def _add_runtime(p: argparse.ArgumentParser) -> None:
    add_device_args(p)
    p.add_argument("--tile", type=int, default=None, metavar="PX",
                   help="sliding-window tiles of PX x PX for larger (native-size) inputs")
    p.add_argument("--tile-overlap", type=float, default=0.25, help="share of a tile its neighbours overlap")
    p.add_argument("--blend", default="gaussian", choices=("gaussian", "linear"), help="tile blending")
    p.add_argument("--tta", action="store_true", help="average predictions over horizontal and vertical flips")
    p.add_argument("--batch-size", type=int, default=4, help="images per forward pass [default: 4]")
    p.add_argument("--workers", type=int, default=0, help="image reading processes [default: 0]")


def _postprocess(args: argparse.Namespace) -> Any:
    from .postprocess import PostProcess

    return PostProcess(args.open, args.close, args.min_size, args.fill_holes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="unetseg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"unetseg {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model on a dataset; writes a new run folder")
    p.add_argument("--data", help="dataset folder or dataset YAML")
    p.add_argument("--config", help="YAML with any of the options below, by section (data, model, ...)")
    p.add_argument("--resume", metavar="RUN", help="continue the interrupted run in this folder")
    p.add_argument("--no-test", action="store_true", help="skip evaluating the best model on the test split")
    add_config_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a model on a dataset split; metrics, per-image CSV, figures")
    p.add_argument("--model", required=True, help="model file (.safetensors from a run's weights/)")
    p.add_argument("--data", required=True, help="dataset folder or dataset YAML")
    p.add_argument("--split", default="test", help="train, valid or test [default: test]")
    p.add_argument("--output", help="output folder [default: a new runs/eval-<dataset>-<split>]")
    p.add_argument("--figures", type=int, default=None, metavar="N", help="draw figures for the first N images")
    p.add_argument("--seed", type=int, default=0, help="seed of held-out splits (as in training) [default: 0]")
    _add_postprocess(p)
    _add_runtime(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict masks for images; PNG masks at the original size")
    p.add_argument("--model", required=True, help="model file")
    p.add_argument("--input", required=True, help="an image, a folder of images, or a glob pattern")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--overlays", action="store_true", help="also write the mask over the image")
    p.add_argument("--probabilities", action="store_true", help="also write probability maps")
    p.add_argument("--contours", action="store_true", help="also write region polygons as JSON")
    p.add_argument("--coco-results", metavar="FILE", help="also write COCO results json (RLE per class and region)")
    p.add_argument("--coco-json", metavar="FILE", help="COCO json of the inputs, for image and category ids")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    _add_postprocess(p)
    _add_runtime(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="generate a small dataset, train, evaluate and predict (no data needed)")
    p.add_argument("--runs-dir", default="runs", help="parent folder of the demo's run [default: runs]")
    p.add_argument("--epochs", type=int, default=12, help="training epochs [default: 12]")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("export", help="export a model file to ONNX or TorchScript (normalisation included)")
    p.add_argument("--model", required=True, help="model file")
    p.add_argument("--format", default="onnx", choices=("onnx", "torchscript"), help="[default: onnx]")
    p.add_argument("--output", help="[default: beside the model, .onnx or .torchscript.pt]")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export")
    p.set_defaults(func=cmd_export)

    add_audio_commands(sub)

    p = sub.add_parser("info", help="print what a model file holds")
    p.add_argument("model", help="model file")
    p.set_defaults(func=cmd_info)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    overrides = overrides_from_args(args)
    if args.resume:
        if args.data or args.config:
            raise UnetsegError("--resume continues a run with its own data and config; drop --data/--config")
        result = train(resume=args.resume, overrides=overrides)
        cfg = Config.from_yaml(Path(args.resume) / "config.yaml")
    else:
        cfg = Config.from_yaml(args.config) if args.config else Config()
        if args.data:
            cfg.data.path = args.data
        result = train(cfg, overrides=overrides)
    best = "n/a" if result.best_score is None else f"{result.best_score:.4f}"
    print(f"run folder: {result.run_dir}")
    print(f"best {cfg.train.monitor} {best} at epoch {result.best_epoch}; model: {result.best_model}")
    if result.interrupted:
        print(f"interrupted; continue with: unetseg train --resume {result.run_dir}")
        return 130
    if not args.no_test:
        _test_after_training(result, cfg)
    return 0


def _test_after_training(result: Any, cfg: Config) -> None:
    import json

    from .evaluate import evaluate

    if not json.loads((result.run_dir / "dataset.json").read_text())["splits"].get("test"):
        return
    ev = evaluate(result.best_model, cfg.data.path, "test", result.run_dir / "test", seed=cfg.train.seed,
                  val_fraction=cfg.data.val_fraction, test_fraction=cfg.data.test_fraction)
    print_metrics(ev.metrics, ev.output)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    ev = evaluate(args.model, args.data, args.split, args.output, threshold=args.threshold,
                  postprocess=_postprocess(args), figures=args.figures, seed=args.seed, device=args.device,
                  batch_size=args.batch_size, workers=args.workers, backend=args.backend, threads=args.threads,
                  tile=args.tile, tile_overlap=args.tile_overlap, blend=args.blend, tta=args.tta)
    print_metrics(ev.metrics, ev.output)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict

    start = time.perf_counter()
    res = predict(args.model, args.input, args.output, threshold=args.threshold, postprocess=_postprocess(args),
                  overlays=args.overlays, probabilities=args.probabilities, contours=args.contours,
                  overwrite=args.overwrite, device=args.device, batch_size=args.batch_size, workers=args.workers,
                  backend=args.backend, threads=args.threads, tile=args.tile, tile_overlap=args.tile_overlap,
                  blend=args.blend, tta=args.tta, coco_results=args.coco_results, coco_json=args.coco_json)
    took = time.perf_counter() - start
    print(f"{len(res.masks)} masks written to {res.output} ({len(res.masks) / took:.1f} images/s)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    res = export(args.model, args.output, args.format, args.overwrite)
    print(f"{res.path}: raw float32 pixels (N, C, H, W, 0-255) in, probabilities out; dynamic batch and size; "
          f"max |export - torch| = {res.max_abs_diff:.2e}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .data.demo import make_demo_dataset
    from .evaluate import evaluate
    from .predict import predict
    from .train import train

    data = make_demo_dataset(Path(args.runs_dir) / "demo-data")
    cfg = Config.from_dict({
        "data": {"path": str(data), "size": [128, 128], "workers": 0},
        "model": {"arch": "classic", "depth": 4, "base_width": 16, "dropout": 0.0},
        "augment": {"rotate": 0, "scale": 0, "vflip": 0},
        "train": {"name": "demo", "runs_dir": args.runs_dir, "epochs": args.epochs, "lr": 3e-3,
                  "batch_size": 8, "scheduler": "cosine", "patience": 0, "progress": args.progress},
    })
    print(f"demo dataset: {data} (tonal calls in noise, 128x128, {sum(_count(data))} images)")
    result = train(cfg)
    ev = evaluate(result.best_model, data, "test", result.run_dir / "test", figures=8)
    test_images = sorted((data / "test" / "images").glob("*.png"))[:4]
    pred = predict(result.best_model, test_images, result.run_dir / "predictions", overlays=True, contours=True)
    print_metrics(ev.metrics, ev.output)
    print(f"predictions: {pred.output}")
    print(f"run folder: {result.run_dir}")
    print(f"test IoU: {ev.metrics['iou']:.4f}")
    return 0


def _count(data: Path) -> list[int]:
    return [len(list((data / s / "images").glob("*.png"))) for s in ("train", "valid", "test")]


def cmd_info(args: argparse.Namespace) -> int:
    import json

    from .modelfile import read_meta

    print(json.dumps(read_meta(args.model), indent=2))
    return 0


def print_metrics(metrics: dict, output: Path) -> None:
    """A metrics table on screen."""
    from rich.console import Console
    from rich.table import Table

    def f(x: Any) -> str:
        return "-" if x is None else f"{x:.4f}"

    table = Table(title=f"{metrics['split']} split: {metrics['images']} images")
    for col in ("class", "IoU", "Dice/F1", "precision", "recall"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for cls, s in metrics["per_class"].items():
        table.add_row(cls, f(s["iou"]), f(s["dice"]), f(s["precision"]), f(s["recall"]))
    table.add_row("[bold]overall[/bold]", f(metrics["iou"]), f(metrics["dice"]), f(metrics["precision"]),
                  f(metrics["recall"]), end_section=True)
    console = Console()
    console.print(table)
    console.print(f"pixel accuracy {f(metrics['accuracy'])}; results in {output}")


def error_line(e: BaseException) -> str:
    """One line for the user; errors raised in data-loader workers arrive wrapped in a traceback."""
    text = str(e)
    if "Original Traceback" in text:
        last = [ln for ln in text.splitlines() if ln.strip()][-1]
        text = last.split("UnetsegError: ", 1)[-1]
    return " ".join(text.split())


def configure_logging(quiet: bool = False) -> None:
    """Our messages on stderr; Lightning's start-up banner (hardware, tips) only as warnings."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger(name).propagate = False


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.quiet)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UnetsegError as e:
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except RuntimeError as e:
        if "UnetsegError" not in str(e):
            raise
        print(f"error: {error_line(e)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
