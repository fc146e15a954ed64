"""The run folder: made once data and model are known to be good, read back by ``--resume``, evaluate and the
processes of a multi-process launch.

A run folder ``<runs_dir>/<name>[-N]/`` holds::

    config.yaml            the resolved configuration (rerun with --config)
    dataset.json           classes, input normalisation and the exact files of each split
    plan.json              the self-configuring plan, when one was made
    metrics.csv            one row per epoch; history.png plots it
    val_predictions/       a grid of validation predictions per epoch
    weights/best.safetensors, weights/last.safetensors   model files (see modelfile.py)
    weights/last.ckpt      full training state for --resume
    tensorboard/           TensorBoard logs
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from unetseg.core.config import Config
from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import new_run_dir, write_json, write_text
from unetseg.data.discover import DatasetInfo
from unetseg.data.inputspec import InputSpec

log = logging.getLogger(__name__)


def make_run_dir(cfg: Config, info: DatasetInfo, spec: InputSpec, plan: dict[str, Any] | None) -> Path:
    """A new run folder holding ``dataset.json`` (and ``plan.json``); ``config.yaml`` follows once the
    trainer knows its processes (``write_config``)."""
    run_dir = new_run_dir(cfg.train.runs_dir, cfg.train.name or info.name)
    write_json(run_dir / "dataset.json", {**info.to_record(), "input": spec.to_dict()})
    if plan is not None:
        write_json(run_dir / "plan.json", plan)
    return run_dir


def write_config(run_dir: Path, cfg: Config, processes: int) -> None:
    """The run's ``config.yaml``: the resolved settings, and how many processes share each step."""
    bs = cfg.train.batch_size
    write_text(run_dir / "config.yaml", cfg.to_yaml() + f"# processes: {processes}; train.batch_size is per "
               f"process (a step sees {processes} x {bs} = {processes * bs} images)\n")


def load_run(run_dir: Path) -> tuple[Config, DatasetInfo, InputSpec]:
    """A run folder's settings, dataset (its exact files) and input, as the run recorded them."""
    cfg = Config.from_yaml(run_dir / "config.yaml")
    record = json.loads((run_dir / "dataset.json").read_text())
    return cfg, DatasetInfo.from_record(record, Path(cfg.data.path)), InputSpec.from_dict(record["input"])


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


def mark_failed(run_dir: Path, error: BaseException) -> None:
    """A run that stopped on an error: removed when it saved nothing, else marked with ``FAILED.txt`` (its
    last checkpoint can still resume it)."""
    if not (run_dir / "weights" / "last.ckpt").exists() and not (run_dir / "metrics.csv").exists():
        shutil.rmtree(run_dir, ignore_errors=True)
        log.info("removed the run folder %s: the run failed before saving anything", run_dir)
        return
    write_text(run_dir / "FAILED.txt", f"{type(error).__name__}: {' '.join(str(error).split())}\n")
