"""``train --init MODEL``: a new run that starts from the weights of an existing unetseg model file (a built-in
prior, a model of another dataset, a reviewed model) instead of random ones.

The run takes the model file's architecture (a flag that names another is refused), its input normalisation
(the weights were trained with it) and, for recordings, checks that the dataset's spectrogram is the one the
model saw. Every tensor whose name and shape match is copied; the rest start fresh (a classifier of another
number of classes, the instance head of a model that had none) and are named in the log.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from unetseg.core.config import Config
from unetseg.core.errors import UnetsegError
from unetseg.data.discover import DatasetInfo
from unetseg.data.inputspec import InputSpec

log = logging.getLogger(__name__)

# Model fields a run takes from the model file it starts from (encoder weights are in the file already).
TAKEN = ("arch", "encoder", "depth", "base_width", "batch_norm", "dropout", "attention", "instances", "input_norm")


def choose_prior(cfg: Config, info: DatasetInfo) -> bool:
    """With no ``--init`` and no model option given, a dataset of boxes made on the built-in call prior's
    spectrogram (``audio dataset --preset prior``, or ``--preset auto`` on few boxes) starts from the prior: said
    in the log and recorded as the run's ``--init``. An architecture option given means a new model; time-only
    (onset/offset) labels train from scratch, which measured better on five finch syllables. True when it does."""
    from unetseg.audio.settings import BUILTIN, PRIOR_FILE
    from unetseg.audio.spectrogram import PRESETS

    architecture = {f"model.{k}" for k in (*TAKEN, "encoder_weights")} - {"model.instances", "model.dropout"}
    if cfg.train.init or not info.spectrogram or architecture & cfg.explicit:
        return False
    if info.events != "box":  # time-only labels: from scratch measured better (benchmarks/fewshot.py, finch)
        return False
    if info.spectrogram != PRESETS["prior"].to_dict() or not PRIOR_FILE.is_file():
        return False
    cfg.update({"train": {"init": BUILTIN}}, "the plan")
    log.info("%s has the built-in call prior's spectrogram: the run starts from the prior (--init %s; give a model "
             "option such as --arch to start from random weights)", info.source, BUILTIN)
    return True


def init_settings(cfg: Config, info: DatasetInfo) -> dict[str, Any] | None:
    """When ``cfg.train.init`` names a model file: check it, take its architecture into ``cfg.model`` (a model
    flag given with another value is refused) and check its spectrogram against the dataset's. Its metadata,
    or None without ``--init``."""
    from unetseg.models.modelfile import read_meta

    if not cfg.train.init:
        return None
    path = Path(cfg.train.init)
    meta = read_meta(path)  # every field checked, no weights loaded yet
    theirs = meta["model"]
    for key in TAKEN:
        if key not in theirs:
            continue
        value = theirs[key]
        if key == "instances" and value == "auto":  # not resolved in the file: the dataset decides
            continue
        if key == "instances" and value == "on" and not info.instances:
            log.info("--init %s: the model has an instance head but %s has no instance targets; the run leaves "
                     "the head out", path, info.source)
            value = "off"
        if f"model.{key}" in cfg.explicit and getattr(cfg.model, key) != value and key != "dropout":
            raise UnetsegError(f"--init {path}: the run takes the model's {key} ({value!r}); "
                               f"--{key.replace('_', '-')} {getattr(cfg.model, key)!r} differs (leave it out)")
        if f"model.{key}" not in cfg.explicit:
            cfg.update({"model": {key: value}}, f"--init {path}")
    cfg.model.encoder_weights = None  # the encoder's weights come with the file
    _check_spectrogram(path, meta.get("spectrogram"), info)
    log.info("--init %s: starting from its weights (%s, %d classes: %s)", path, theirs.get("arch"),
             len(meta["classes"]), ", ".join(meta["classes"]))
    return meta


def _check_spectrogram(path: Path, theirs: dict[str, Any] | None, info: DatasetInfo) -> None:
    from unetseg.audio.spectrogram import SpectrogramConfig

    ours = info.spectrogram
    if bool(theirs) != bool(ours):
        kind = "spectrograms of recordings" if theirs else "images"
        raise UnetsegError(f"--init {path}: the model was trained on {kind}, and {info.source} is not")
    if not theirs:
        return
    a, b = SpectrogramConfig.from_dict(theirs, f"{path}: spectrogram"), SpectrogramConfig.from_dict(ours)
    changed = [f"{f.name} {getattr(a, f.name)!r} (model) vs {getattr(b, f.name)!r} (dataset)"
               for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]
    if changed:
        raise UnetsegError(f"--init {path}: the dataset's spectrogram differs from the model's: {'; '.join(changed)}; "
                           "make the dataset with the model's settings")


def init_input(spec: InputSpec, meta: dict[str, Any] | None) -> InputSpec:
    """The run's input with the normalisation the starting model was trained with (same channels)."""
    if meta is None:
        return spec
    theirs = InputSpec.from_dict(meta["input"])
    if theirs.channels != spec.channels:
        raise UnetsegError(f"--init: the model takes {theirs.channels}-channel input and the dataset's images are "
                           f"{spec.channels}-channel")
    return dataclasses.replace(spec, mean=theirs.mean, std=theirs.std)


def load_init_weights(model: Any, path: str | Path) -> tuple[int, list[str]]:
    """Copy into ``model`` every tensor of the model file at ``path`` whose name and shape match; the number
    copied and the names of the model's tensors left as they were (fresh)."""
    import torch

    from unetseg.models.modelfile import load_model

    saved = load_model(path).model.state_dict()  # every field and tensor checked as for any model file
    own = model.state_dict()
    taken = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
    if not any(v.dim() > 1 for v in taken.values()):  # counters and a bias of one value fit any model
        raise UnetsegError(f"--init {path}: none of its weights fit this model")
    with torch.no_grad():
        model.load_state_dict(taken, strict=False)
    fresh = [k for k in own if k not in taken]
    log.info("--init %s: %d of %d tensors copied%s", path, len(taken), len(own),
             f"; fresh: {', '.join(fresh[:6])}{' ...' if len(fresh) > 6 else ''}" if fresh else "")
    return len(taken), fresh
