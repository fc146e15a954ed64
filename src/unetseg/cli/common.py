"""What every command shares: option groups made from the typed options, errors, logging, tables."""

from __future__ import annotations

import argparse
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from unetseg.cli.flags import add_dataclass_arguments, dataclass_from_args

INFERENCE = "inference"
POSTPROCESS = "postprocess"


def add_inference_args(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The flags of ``InferenceOptions`` (device, backend, threads, batches, tiles, TTA)."""
    from unetseg.inference.options import InferenceOptions

    add_dataclass_arguments(p.add_argument_group("inference"), InferenceOptions, INFERENCE, skip=skip)


def inference_from_args(args: argparse.Namespace) -> Any:
    from unetseg.inference.options import InferenceOptions

    return dataclass_from_args(InferenceOptions, args, INFERENCE)


def group_threads(options: Any, group: Any) -> Any:
    """Inference options of one of several processes on a machine: its share of the cores (unless --threads
    says) and, with --device auto on a GPU machine, GPU LOCAL_RANK modulo the GPUs (processes share GPUs)."""
    import dataclasses
    import os

    import torch

    if group.world == 1:
        return options
    local = int(os.environ.get("LOCAL_WORLD_SIZE", group.world))
    changes: dict[str, Any] = {}
    if options.threads is None:
        changes["threads"] = max(1, (os.cpu_count() or 1) // max(1, local))
    if options.device == "auto" and torch.cuda.is_available():
        changes["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    return dataclasses.replace(options, **changes)


def add_postprocess_args(p: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """The flags of ``PostProcess`` (threshold, morphology, small regions, holes)."""
    from unetseg.prediction.settings import PostProcess

    add_dataclass_arguments(p.add_argument_group("post-processing"), PostProcess, POSTPROCESS, skip=skip)


def postprocess_from_args(args: argparse.Namespace) -> Any:
    from unetseg.prediction.settings import PostProcess

    return dataclass_from_args(PostProcess, args, POSTPROCESS)


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


def save_traceback(e: BaseException) -> Path:
    """Write the traceback of an unexpected error to a file under the cache; return its path."""
    import os
    import time
    import traceback

    from unetseg.core.fileio import cache_root, write_text

    path = cache_root() / "errors" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.txt"
    write_text(path, "".join(traceback.format_exception(e)))
    return path


def configure_logging(quiet: bool = False) -> None:
    """Our messages on stderr; Lightning's start-up banner (hardware, tips) only as warnings."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(message)s")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    from PIL import Image

    # Pillow's warning for images of 89-179 M pixels: our memory estimates decide, with our own message.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
        logging.getLogger(name).propagate = False


class Parser(argparse.ArgumentParser):
    """argparse with its errors (unknown flag, bad choice, bad number) as our one line and exit 2, not a usage
    block; ``unetseg CMD --help`` shows the usage."""

    def error(self, message: str) -> NoReturn:
        import sys

        print(f"error: {self.prog}: {' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def number(kind: type = float, gt: float | None = None, ge: float | None = None, lt: float | None = None,
           le: float | None = None) -> Callable[[str], Any]:
    """An argparse ``type`` for a finite int or float within bounds (NaN, inf and out-of-range values refused)."""
    from unetseg.core.config import check_bounds

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        problem = check_bounds(value, gt=gt, ge=ge, lt=lt, le=le)
        if problem:
            raise argparse.ArgumentTypeError(f"{text!r} {problem}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def add_batch_args(p: argparse.ArgumentParser, inputs: str, items: str) -> None:
    """``--model``, ``--input``, ``--output``, ``--overwrite`` and ``--resume`` of a command that runs a model
    over many ``items`` (``predict``, ``audio detect``) into one output folder."""
    p.add_argument("--model", required=True, help="model file")
    p.add_argument("--input", required=True, help=inputs)
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs an earlier run wrote there")
    p.add_argument("--resume", action="store_true", help="finish an interrupted --output folder (same model and "
                   f"options; {items} whose outputs exist are skipped)")


def check_paths(model: str | None = None, inputs: str | None = None, data: str | None = None) -> None:
    """Refuse a missing model file, input or dataset at once, before torch or Lightning is imported (the
    full checks follow where the work starts; these give the same one line, in a fraction of a second)."""
    import glob

    from unetseg.core.errors import UnetsegError

    if model is not None and model != "builtin" and not Path(model).is_file():
        raise UnetsegError(f"{model}: model file not found")
    if inputs and not Path(inputs).exists() and not glob.has_magic(inputs):
        raise UnetsegError(f"{inputs}: no such file or folder")
    if data and not Path(data).exists():
        raise UnetsegError(f"{data}: dataset not found")
