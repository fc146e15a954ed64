"""Typed training configuration: every default in one place, saved per run as ``config.yaml``.

Each field becomes a ``unetseg train`` flag (``--base-width 32``); a YAML file given with ``--config``
sets any of them by section (``model: {base_width: 32}``). Unknown keys and bad values are errors.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from unetseg.core.errors import UnetsegError
from unetseg.core.guard import check_run_name

MAX_SEED = 2**32 - 1  # numpy's and Lightning's seeds


def option(default: Any, help: str, choices: tuple | None = None, **extra: Any) -> Any:
    """A dataclass field whose metadata makes a flag: help, choices, and optionally metavar, default_text,
    and bounds ``gt``, ``ge``, ``lt``, ``le`` that every value (YAML or flag) must meet."""
    meta = {"help": help, "choices": choices, **extra}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    path: str = option("", "dataset folder (<root>/{train,valid|val,test}/{images,masks}) or dataset YAML")
    size: list[int] | None = option(
        [256, 256], "network input HxW (e.g. 256 or 384x640); none with resize_mode=pad"
    )
    resize_mode: str = option(
        "resize",
        "resize: stretch to size; letterbox: keep aspect and pad to size; pad: native size padded "
        "to a multiple of 32",
        ("resize", "letterbox", "pad"),
    )
    crop: list[int] | None = option(None, "random training crop HxW taken after resizing (none: whole image)")
    val_fraction: float = option(0.15, "share of train held out for validation when no valid split exists",
                                 ge=0.0, lt=1.0)
    test_fraction: float = option(0.15, "share of train held out for test when only a train split exists",
                                  ge=0.0, lt=1.0)
    normalize: str = option(
        "auto",
        "auto: ImageNet statistics for pretrained encoders, else the train split's mean/std",
        ("auto", "dataset", "imagenet", "none"),
    )
    channels: int | None = option(None, "model input channels, 1 or 3 (default: from the first train image)")
    workers: int = option(-1, "data loader worker processes (-1: one per spare core)", ge=-1, le=64)


@dataclass
class ModelConfig:
    arch: str = option("classic", "classic (our U-Net) or a segmentation_models_pytorch architecture: unet, ...")
    encoder: str = option("resnet34", "smp encoder name (efficientnet-b3, resnet34, mobilenet_v2, ...)")
    encoder_weights: str | None = option(None, "none, imagenet (needs the internet) or a local weights file")
    depth: int = option(4, "classic U-Net: number of down-sampling steps", ge=1, le=8)
    base_width: int = option(32, "classic U-Net: channels of the first level (doubled at each step); 8 for "
                             "spectrogram datasets unless set", ge=1, le=512)
    batch_norm: bool = option(True, "classic U-Net: batch normalisation after each convolution")
    dropout: float = option(0.1, "classic U-Net: dropout at the bottleneck and in the decoder", ge=0.0, lt=1.0)
    attention: bool = option(False, "classic U-Net: attention gates on the skip connections (Oktay et al.)")
    instances: str = option("auto", "instance head (a centre heatmap and box edges beside the class maps, so "
                            "touching objects and calls come apart): auto turns it on where the dataset has "
                            "instance targets", ("auto", "on", "off"))
    input_norm: str = option("none", "band: subtract each input row's mean over the window before the network (a "
                             "spectrogram's every frequency band loses its background level, so the model hears calls "
                             "whatever the recorder's gain and noise colour; the built-in call prior's)",
                             ("none", "band"))


@dataclass
class AugmentConfig:
    enabled: bool = option(True, "augment training images (never validation)")
    hflip: float = option(0.5, "probability of a horizontal flip", ge=0.0, le=1.0)
    vflip: float = option(0.0, "probability of a vertical flip", ge=0.0, le=1.0)
    rotate: float = option(15.0, "maximum rotation in degrees", ge=0.0, le=180.0)
    scale: float = option(0.1, "maximum relative zoom in or out", ge=0.0, lt=1.0)
    affine_p: float = option(0.5, "probability of the rotation/scale transform", ge=0.0, le=1.0)
    brightness: float = option(0.2, "maximum relative brightness change", ge=0.0, le=1.0)
    contrast: float = option(0.2, "maximum relative contrast change", ge=0.0, le=1.0)
    color_p: float = option(0.5, "probability of the brightness/contrast change", ge=0.0, le=1.0)


@dataclass
class TrainConfig:
    name: str = option("", "run name; the run folder is <runs_dir>/<name>[-N] (default: dataset folder name)",
                       check=lambda v: v == "" or check_run_name(v))
    runs_dir: str = option("runs", "parent folder of run folders")
    init: str | None = option(None, "a unetseg model file to start from (its architecture and weights; layers "
                              "that do not fit, such as a classifier of other classes, start fresh)",
                              metavar="MODEL")
    plan: bool = option(True, "choose the options you leave unset from the dataset's fingerprint, the machine "
                        "and --max-time; the plan and its reasons are saved as plan.json")
    loss: str = option("auto", "bce, dice, jaccard, focal, ce, lovasz, tversky or a weighted sum "
                       "(0.5*bce+0.5*dice); auto: bce+dice for binary, ce+dice for multi-class")
    instance_weight: float = option(0.25, "weight of the instance head's loss (heatmap focal + edge L1) beside "
                                    "the segmentation loss", gt=0.0, le=100.0)
    class_weights: str = option("none", "weights of the classes in the ce term: none or one number per class "
                                "(1,2.5,...); the plan sets median-frequency weights for rare classes")
    sampler: str = option("uniform", "training image sampling: uniform, or rare (images holding rare classes "
                          "drawn more often)", ("uniform", "rare"))
    optimizer: str = option("adamw", "optimizer", ("adam", "adamw", "sgd"))
    lr: float = option(1e-3, "learning rate", gt=0.0, le=10.0)
    weight_decay: float = option(1e-4, "weight decay", ge=0.0, le=10.0)
    batch_size: int = option(8, "batch size per process (a step of N processes sees N x this)", ge=1, le=65536)
    epochs: int = option(50, "maximum epochs", ge=1, le=10**6)
    max_time: float | None = option(None, "stop training after this many minutes", gt=0.0, le=10**6)
    max_memory: float | None = option(None, "memory budget of a training step in GB (checked before training, "
                                      "from the model and the batch's size); default: half the machine's memory",
                                      gt=0.0)
    scheduler: str = option("plateau", "learning-rate schedule; warmup-cosine follows --max-time when given",
                            ("plateau", "cosine", "warmup-cosine", "none"))
    warmup: float = option(0.05, "warmup-cosine: share of training spent raising the learning rate", ge=0.0, lt=1.0)
    patience: int = option(10, "early stopping: epochs without improvement of the monitor (0: off)", ge=0, le=10**6)
    val_every: int = option(1, "validate every N epochs (and after the last)", ge=1, le=10**6)
    monitor: str = option("val_iou", "metric that picks the best model", ("val_iou", "val_loss"))
    threshold: float = option(0.5, "binary: probability above which a pixel is foreground", gt=0.0, lt=1.0)
    seed: int = option(0, "random seed for splits, initialisation and augmentation", ge=0, le=MAX_SEED)
    accelerator: str = option("auto", "Lightning accelerator", ("auto", "cpu", "gpu", "cuda", "mps"))
    devices: str = option("auto", "Lightning devices per node: auto, a count (1, 4) or GPU indices (0,2); on a CPU a "
                          "count of processes")
    num_nodes: int = option(1, "machines (SLURM nodes) the run spans", ge=1, le=4096)
    strategy: str = option("auto", "Lightning strategy for several processes", ("auto", "ddp", "ddp_spawn",
                                                                                 "ddp_find_unused_parameters_true"))
    precision: str = option("32-true", "Lightning precision", ("32-true", "32", "16-mixed", "bf16-mixed",
                                                               "bf16-true", "16-true", "64-true"))
    channels_last: bool = option(True, "channels_last memory format (faster convolutions on CPU)")
    val_grid: int = option(4, "validation images drawn in the per-epoch prediction grid", ge=0, le=64)
    progress: bool = option(True, "show a progress bar")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Config:
        cfg = cls()
        cfg.update(data, source)
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> Config:
        from unetseg.core.fileio import read_yaml

        data = read_yaml(path, "config") or {}
        if not isinstance(data, dict):
            raise UnetsegError(f"{path}: a config must be a mapping of sections")
        return cls.from_dict(data, str(path))

    @property
    def sources(self) -> dict[str, str]:
        """Where each ``explicit`` option came from (a YAML file, ``command line``, ``--init MODEL``)."""
        return self.__dict__.setdefault("_sources", {})

    @property
    def explicit(self) -> set[str]:
        """The ``section.key`` names set through ``update`` (YAML, flags, dicts), not left at their defaults."""
        return self.__dict__.setdefault("_explicit", set())

    def update(self, data: dict[str, Any], source: str = "config") -> None:
        """Set fields from ``{section: {key: value}}``, checking names and types."""
        for section, values in data.items():
            if section not in SECTIONS:
                raise UnetsegError(f"{source}: unknown section {section!r} (expected {', '.join(SECTIONS)})")
            if not isinstance(values, dict):
                raise UnetsegError(f"{source}: section {section!r} must be a mapping")
            obj = getattr(self, section)
            names = {f.name: f for f in dataclasses.fields(obj)}
            for key, value in values.items():
                if key not in names:
                    raise UnetsegError(
                        f"{source}: unknown key {section}.{key} (known: {', '.join(names)})"
                    )
                setattr(obj, key, coerce(type(obj), names[key], value, f"{source}: {section}.{key}"))
                self.explicit.add(f"{section}.{key}")
                self.sources[f"{section}.{key}"] = source


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "augment": AugmentConfig,
    "train": TrainConfig,
}


MAX_SIDE = 65536  # pixels on a side of a network input or crop


def parse_size(text: str | int | list | tuple | None) -> list[int] | None:
    """``256`` -> [256, 256]; ``384x640`` -> [384, 640]; ``none`` -> None."""
    if text is None or (isinstance(text, str) and text.lower() in ("", "none", "null")):
        return None
    if isinstance(text, bool) or (isinstance(text, list | tuple) and any(
            isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()) for v in text)):
        raise ValueError(f"expected HxW in whole pixels, got {text!r}")
    if isinstance(text, int):
        values = [text, text]
    elif isinstance(text, list | tuple):
        values = [int(v) for v in text]
    else:
        values = [int(v) for v in str(text).lower().replace(",", "x").split("x")]
    if len(values) == 1:
        values = values * 2
    if len(values) != 2 or not all(1 <= v <= MAX_SIDE for v in values):
        raise ValueError(f"expected HxW between 1 and {MAX_SIDE} pixels, got {text!r}")
    return values


def coerce(owner: type, f: dataclasses.Field, value: Any, where: str) -> Any:
    """Convert ``value`` to the type of field ``f`` of dataclass ``owner``; raise a one-line error naming
    ``where``."""
    hint = typing.get_type_hints(owner)[f.name]
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and typing.get_origin(base) is list:
        base = list
    try:
        if value is None or (optional and isinstance(value, str) and value.lower() in ("none", "null", "")):
            if not optional:
                raise ValueError("a value is required")
            return None
        if base is list or typing.get_origin(base) is list:
            out: Any = parse_size(value)
        elif base is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                    raise ValueError("expected true or false")
                out = value.lower() in ("true", "yes", "1")
            elif isinstance(value, bool):
                out = value
            else:
                raise TypeError("expected true or false")
        elif base is int:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise TypeError("expected an integer")
            if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
                value = float(value)  # 1e3 is a whole number; nan, inf and 2.5 are refused below
            if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
                raise ValueError("expected an integer")
            out = int(value)
        elif base is float:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise TypeError("expected a number")
            out = float(value)
        else:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise TypeError("expected text")
            out = str(value)
    except (TypeError, ValueError) as e:
        raise UnetsegError(f"{where}: bad value {value!r}: {e}") from e
    check_value(f, out, where)
    return out


def check_value(f: dataclasses.Field, value: Any, where: str) -> None:
    """A field's value against its metadata: choices, bounds and finiteness of numbers, and its ``check``."""
    if value is None:
        return
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise UnetsegError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        problem = check_bounds(value, **{k: f.metadata.get(k) for k in ("gt", "ge", "lt", "le")})
        if problem:
            raise UnetsegError(f"{where}: {value!r} {problem}")
    check = f.metadata.get("check")
    if check is not None:
        try:
            check(value)
        except UnetsegError as e:
            raise UnetsegError(f"{where}: {e}") from None


MAX_INT = 2**63 - 1


def check_bounds(value: float, gt: float | None = None, ge: float | None = None, lt: float | None = None,
                 le: float | None = None) -> str | None:
    """What is wrong with a number (not finite, or out of its bounds), or None: every option's range check."""
    if isinstance(value, float) and not math.isfinite(value):
        return "is not a finite number"
    if isinstance(value, int) and not -MAX_INT <= value <= MAX_INT:
        return "is out of range"
    for bound, word, ok in ((gt, ">", operator.gt), (ge, ">=", operator.ge), (lt, "<", operator.lt),
                            (le, "<=", operator.le)):
        if bound is not None and not ok(value, bound):
            return f"is out of range: it must be {word} {bound}"
    return None


def check_threads(threads: int) -> None:
    """More threads than cores only slows inference down; a typo like 10000 would start them all."""
    import os

    cores = os.cpu_count() or 1
    if threads > cores:
        raise UnetsegError(f"{threads} threads: this machine has {cores} cores")


def check_device(device: str) -> None:
    """An inference device unetseg runs on: auto, cpu, cuda or cuda:N, mps (not meta, xpu:abc or a typo)."""
    import re

    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,3})?", device):
        raise UnetsegError(f"{device[:40]!r} is not a device unetseg runs on (auto, cpu, cuda, cuda:N or mps)")


def check_fields(obj: Any, prefix: str = "") -> None:
    """Check every field of a dataclass instance built in code (not from flags) against its metadata: the
    choices, bounds and finiteness that ``coerce`` checks for YAML and flags. Errors name the flag, or, with
    ``prefix``, ``<prefix><field>`` (e.g. ``spectrogram n_fft``)."""
    for f in dataclasses.fields(obj):
        check_value(f, getattr(obj, f.name), f"{prefix}{f.name}" if prefix else flag_name(f))


def bounds(cls: type, name: str) -> dict[str, float]:
    """The bounds (``gt``, ``ge``, ``lt``, ``le``) of option ``name`` of dataclass ``cls``, for another reader of
    the same option (an HTTP query) to declare them from the one definition."""
    meta = cls.__dataclass_fields__[name].metadata
    return {k: meta[k] for k in ("gt", "ge", "lt", "le") if meta.get(k) is not None}


def flag_name(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


Mode = Literal["binary", "multiclass"]
