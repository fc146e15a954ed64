"""A training plan from the dataset's fingerprint, the machine and the time budget.

nnU-Net's lesson, under a CPU budget: measure the dataset (sizes, channels, class frequencies, how many
images hold each class, object sizes) and the machine (a short timed probe of training steps, bf16 against
fp32), then choose what the user left unset: input geometry, batch size, precision, model and width, loss
and class weights, sampling, schedule and how much training fits the budget. Every choice carries its
reason; ``train`` prints the plan and saves it as ``plan.json`` in the run folder.

A group of coupled options (input geometry: size, resize mode, crop; the model: arch, encoder, width,
depth) is planned only when the user set none of its members; any other option the user set is kept.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from unetseg.core.config import Config
from unetseg.core.errors import UnetsegError
from unetseg.core.machine import host_features
from unetseg.data.discover import DatasetInfo
from unetseg.data.stats import PairStats
from unetseg.plan.fingerprint import RARE_PIXELS, Fingerprint, fingerprint
from unetseg.plan.probe import StepShape, machine, training_rates

log = logging.getLogger(__name__)

# Budgeted training picks the largest model that still gets this many epochs: U-Nets trained from
# scratch on a few hundred images keep improving for tens of epochs.
MIN_EPOCHS = 30
# Candidates from small to large.
IMAGE_MODELS: list[tuple[str, dict[str, Any]]] = [
    ("classic U-Net w16", {"arch": "classic", "base_width": 16, "depth": 4}),
    ("classic U-Net w32", {"arch": "classic", "base_width": 32, "depth": 4}),
    ("U-Net / ResNet-18 (smp)", {"arch": "unet", "encoder": "resnet18"}),
]
# Spectrogram windows of bird sound: on the bird-mixture benchmark (8 CPU minutes) a classic U-Net of width
# 8 reached test IoU 0.839 against 0.818 at width 16 (more epochs in the budget) and detects 175x real time
# against 107x (benchmarks/results/birdsound_w8.json, detect_speed_w8.json).
AUDIO_BASE_WIDTH = 8
AUDIO_MODELS: list[tuple[str, dict[str, Any]]] = [
    ("classic U-Net w8", {"arch": "classic", "base_width": AUDIO_BASE_WIDTH, "depth": 4}),
    ("classic U-Net w16", {"arch": "classic", "base_width": 16, "depth": 4}),
]
GEOMETRY = ("data.size", "data.resize_mode", "data.crop")
MODEL = ("model.arch", "model.encoder", "model.encoder_weights", "model.base_width", "model.depth")
CROP = 256  # side of a training crop: large enough for street-scene context, small enough for a CPU
NATIVE_MAX = 1024  # images up to this side train on crops at native resolution and predict whole
BF16_GAIN = 1.25  # bf16 mixed precision is chosen when its training steps are at least this much faster
VAL_SPEEDUP = 2.5  # validation (forward only) runs about this much faster per pixel than a training step
VAL_SHARE = 0.2  # of training time spent validating
EPOCH_OVERHEAD_S = 1.5  # model files, checkpoint, plots per validated epoch


@dataclass
class Choice:
    key: str  # section.key
    value: Any
    reason: str
    user: bool = False  # the user set it; the plan kept it


@dataclass
class Plan:
    fingerprint: Fingerprint
    machine: dict[str, Any]
    budget_minutes: float | None
    choices: list[Choice] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"budget_minutes": self.budget_minutes, "machine": self.machine,
                "fingerprint": self.fingerprint.to_dict(),
                "choices": {c.key: {"value": c.value, "reason": c.reason, "set_by": "user" if c.user else "plan"}
                            for c in self.choices},
                "probe": self.probe, "estimate": self.estimate, "planning_seconds": round(self.seconds, 1)}

    def summary(self) -> str:
        lines = ["training plan" + (f" for {self.budget_minutes:g} minutes" if self.budget_minutes else "") + ":"]
        for c in self.choices:
            value = "x".join(map(str, c.value)) if isinstance(c.value, list) else c.value
            shown = c.reason if not c.user or c.reason.startswith("from --init") else "set by you"
            lines.append(f"  {c.key} = {value}  ({shown})")
        return "\n".join(lines)


class _Planner:
    def __init__(self, cfg: Config, fp: Fingerprint) -> None:
        self.cfg, self.fp = cfg, fp
        self.plan = Plan(fp, machine(), cfg.train.max_time)

    def user(self, key: str) -> bool:
        return key in self.cfg.explicit

    def given(self, key: str, reason: str) -> str:
        """Why a value the plan did not choose is what it is: where it came from when not the user's flags."""
        source = self.cfg.sources.get(key, "")
        return f"from {source}" if source.startswith("--init") else reason

    def keep(self, keys: tuple[str, ...], reason: str) -> None:
        """Record a group of options as they are: the user set at least one of them."""
        for key in keys:
            section, name = key.split(".")
            value = getattr(getattr(self.cfg, section), name)
            why = self.given(key, reason) if self.user(key) else "default, kept with the options you set"
            self.plan.choices.append(Choice(key, value, why, user=self.user(key)))

    def set(self, key: str, value: Any, reason: str) -> None:
        """Set ``section.key`` unless the user did; record either way."""
        section, name = key.split(".")
        if self.user(key):
            self.plan.choices.append(Choice(key, getattr(getattr(self.cfg, section), name), self.given(key, reason),
                                            user=True))
            return
        setattr(getattr(self.cfg, section), name, value)
        self.plan.choices.append(Choice(key, value, reason))


def make_plan(cfg: Config, info: DatasetInfo, stats: PairStats, channels: int) -> Plan:
    """Fill the unset options of ``cfg`` (in place) from the dataset and the machine; return the plan."""
    start = time.monotonic()
    fp = fingerprint(info, stats, channels)
    p = _Planner(cfg, fp)
    _geometry(p)
    _batch(p)
    _loss(p)
    _augment(p)
    _schedule(p)
    _precision_and_model(p)
    p.plan.seconds = time.monotonic() - start
    _budget(p)
    return p.plan


def _geometry(p: _Planner) -> None:
    fp = p.fp
    h, w = fp.size_max
    if any(p.user(k) for k in GEOMETRY):
        p.keep(GEOMETRY, "input geometry given by you")
        return
    if fp.spectrogram:
        p.set("data.resize_mode", "pad", "spectrogram windows keep their pixels: a column is a time step, a row "
              "a frequency; no resizing")
        p.set("data.size", None, "native size")
        p.set("data.crop", None, "whole windows")
        return
    if max(h, w) <= NATIVE_MAX:
        p.set("data.resize_mode", "pad", f"images up to {fp.size_max[1]}x{fp.size_max[0]} train and predict at "
              "native resolution, so thin and small objects keep their pixels")
        p.set("data.size", None, "native size")
        crop = [min(CROP, _floor32(h)), min(CROP, _floor32(w))]
        if crop[0] < h or crop[1] < w:
            p.set("data.crop", crop, f"random {crop[0]}x{crop[1]} crops keep steps fast on large images")
        else:
            p.set("data.crop", None, "images are small enough to train whole")
        return
    scale = NATIVE_MAX / max(h, w)
    size = [_floor32(h * scale), _floor32(w * scale)]
    p.set("data.resize_mode", "letterbox", f"images up to {w}x{h} are scaled down to fit {size[1]}x{size[0]} "
          "keeping their aspect")
    p.set("data.size", size, "largest side 1024")
    p.set("data.crop", [CROP, CROP], f"random {CROP}x{CROP} crops of the scaled image")


def _floor32(v: float) -> int:
    return max(32, int(v) // 32 * 32)


def _input_hw(cfg: Config, fp: Fingerprint) -> tuple[int, int]:
    if cfg.data.crop:
        return int(cfg.data.crop[0]), int(cfg.data.crop[1])
    if cfg.data.size and cfg.data.resize_mode != "pad":
        return int(cfg.data.size[0]), int(cfg.data.size[1])
    return math.ceil(fp.size_median[0] / 32) * 32, math.ceil(fp.size_median[1] / 32) * 32


def _batch(p: _Planner) -> None:
    h, w = _input_hw(p.cfg, p.fp)
    by_area = 8 * (256 * 256) / (h * w)
    batch = int(2 ** round(math.log2(max(by_area, 1))))
    batch = max(2, min(32, batch, max(2, p.fp.train_images // 4)))
    p.set("train.batch_size", batch, f"{batch} inputs of {h}x{w} per step (8 at 256x256, scaled by area; at most "
          "a quarter of the train split)")


def _loss(p: _Planner) -> None:
    fp = p.fp
    if fp.binary:
        p.set("train.loss", "bce+dice", "binary masks: BCE for calibrated probabilities, Dice for the small "
              "foreground share")
        p.set("train.sampler", "uniform", "one foreground class")
        return
    share = np.asarray(fp.pixel_share)
    present = share > 0
    ratio = share[present].max() / share[present].min() if present.sum() > 1 else 1.0
    if ratio < 10:
        p.set("train.loss", "ce+dice", f"classes are balanced (largest/smallest pixel share {ratio:.1f})")
        p.set("train.class_weights", "none", "balanced classes")
        p.set("train.sampler", "uniform", "balanced classes")
        return
    weights = median_frequency_weights(share)
    p.set("train.loss", "ce+dice", f"classes span {ratio:.0f}x in pixel share: weighted CE lifts rare "
          "classes, Dice weighs every class alike")
    p.set("train.class_weights", ",".join(f"{w:.3g}" for w in weights),
          "median frequency balancing (weight = median share / class share, clipped to 0.2..10)")
    rare = [fp.classes[c] for c in fp.rare]
    p.set("train.sampler", "rare", "images holding rare classes are drawn more often"
          + (f" ({', '.join(rare)} below {RARE_PIXELS:.0%} of pixels)" if rare else ""))


def median_frequency_weights(share: list[float] | np.ndarray) -> list[float]:
    """Eigen & Fergus's median frequency balancing: median share / class share, clipped to [0.2, 10]
    (classes absent from the data get weight 1)."""
    share = np.asarray(share, np.float64)
    present = share > 0
    median = float(np.median(share[present])) if present.any() else 1.0
    weights = np.ones_like(share)
    weights[present] = np.clip(median / share[present], 0.2, 10.0)
    return [round(float(w), 4) for w in weights]


def sample_weights(presence: np.ndarray, pixel_share: list[float], temperature: float = 0.1) -> np.ndarray:
    """Per-image draw weights for rare-class sampling (as DAFormer does): pick a class with probability
    ~ exp((1 - share) / T), then an image holding it; half the draws stay uniform."""
    share = np.asarray(pixel_share, np.float64)
    held = presence.sum(0)
    p_class = np.where(held > 0, np.exp((1 - share) / temperature), 0.0)
    p_class /= p_class.sum()
    rare = (presence * (p_class / np.maximum(held, 1))).sum(1)
    uniform = np.full(len(presence), 1.0 / len(presence))
    return 0.5 * uniform + 0.5 * rare / max(rare.sum(), 1e-12)


def _augment(p: _Planner) -> None:
    if p.fp.spectrogram:
        p.set("augment.rotate", 0.0, "spectrograms: rotating would tilt time against frequency")
        p.set("augment.scale", 0.0, "spectrograms: zooming would shift pitch and tempo")
        p.set("augment.vflip", 0.0, "spectrograms: low and high frequencies are not alike")
    else:
        p.set("augment.hflip", 0.5, "left and right are alike in most scenes")


def _schedule(p: _Planner) -> None:
    budget = p.cfg.train.max_time
    p.set("train.scheduler", "warmup-cosine", "a short warm-up, then cosine decay to 1% "
          + ("over the time budget, so the last epochs are the best" if budget else "over the epochs"))
    if budget:
        p.set("train.patience", 0, "with a time budget the schedule ends training, not early stopping")


def _precision_and_model(p: _Planner) -> None:
    cfg, fp = p.cfg, p.fp
    candidates = AUDIO_MODELS if fp.spectrogram else IMAGE_MODELS
    model_free = not any(p.user(k) for k in MODEL)
    on_gpu = torch.cuda.is_available() and cfg.train.accelerator in ("auto", "gpu", "cuda")
    if on_gpu:
        precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        p.set("train.precision", precision, "mixed precision on the GPU")
    elif not p.user("train.precision"):
        first = {**_model_fields(cfg), **(candidates[0][1] if model_free else {})}
        rates = _rates(p, {"fp32": (first, False), "bf16": (first, True)})
        gain = rates["bf16"] / rates["fp32"]
        p.plan.probe["precision"] = {"images_per_s": rates, "bf16_gain": round(gain, 2)}
        if gain >= BF16_GAIN:
            p.set("train.precision", "bf16-mixed", f"bf16 autocast trains {gain:.1f}x faster than fp32 on this CPU "
                  f"({host_features(p.plan.machine)})")
        else:
            p.set("train.precision", "32-true", f"bf16 autocast is only {gain:.2f}x fp32 on this CPU "
                  f"({host_features(p.plan.machine)})")
    else:
        p.set("train.precision", None, "")
    bf16 = cfg.train.precision.startswith("bf16")
    if not (model_free and cfg.train.max_time and not on_gpu):
        if model_free:
            name, fields = candidates[0] if fp.spectrogram else candidates[1]
            for k, v in fields.items():
                p.set(f"model.{k}", v, f"{name}: the default " + ("on a GPU" if on_gpu else "without --max-time"))
        else:
            p.keep(MODEL, "model given by you")
        if not on_gpu:
            rate = _rates(p, {"chosen": (_model_fields(cfg), bf16)})["chosen"]
            p.plan.probe["model"] = {"images_per_s": rate}
            p.plan.estimate["train_images_per_s"] = round(rate, 2)
        return
    rates = _rates(p, {n: ({**_model_fields(cfg), **m}, bf16) for n, m in candidates})
    budget_s = cfg.train.max_time * 60 / (1 + VAL_SHARE)  # validation takes the rest
    epochs = {n: budget_s * r / max(fp.train_images, 1) for n, r in rates.items()}
    p.plan.probe["model"] = {"images_per_s": rates, "epochs_in_budget": {n: round(e, 1) for n, e in epochs.items()}}
    fitting = [n for n, _ in candidates if epochs[n] >= MIN_EPOCHS]
    name = fitting[-1] if fitting else candidates[0][0]
    why = (f"the largest model that gets {MIN_EPOCHS}+ epochs in the budget (about {epochs[name]:.0f})" if fitting
           else f"the smallest model; even it gets only about {epochs[name]:.0f} epochs in the budget")
    for k, v in dict(candidates)[name].items():
        p.set(f"model.{k}", v, f"{name}: {why}")
    p.plan.estimate["train_images_per_s"] = round(rates[name], 2)


def _rates(p: _Planner, configs: dict[str, tuple[dict[str, Any], bool]]) -> dict[str, float]:
    """``training_rates`` of ``configs`` at the planned batch, input size and loss."""
    h, w = _input_hw(p.cfg, p.fp)
    shape = StepShape(p.fp.channels, 1 if p.fp.binary else len(p.fp.classes), p.cfg.train.batch_size, h, w,
                      p.cfg.train.loss)
    return training_rates(configs, shape, p.plan.machine, p.cfg.train.max_memory)


def _model_fields(cfg: Config) -> dict[str, Any]:
    return dict(vars(cfg.model))


def _validation(p: _Planner) -> float | None:
    """Choose how often to validate so that validation takes about VAL_SHARE of training; return the
    estimated seconds of one epoch (training + its share of validation) or None without a probe."""
    cfg, fp, plan = p.cfg, p.fp, p.plan
    rate = plan.estimate.get("train_images_per_s")
    if not rate:
        return None
    h, w = _input_hw(cfg, fp)
    train_s = fp.train_images / rate
    if cfg.data.resize_mode == "pad" or not cfg.data.size:  # validation sees whole images
        pixels = math.ceil(fp.size_median[0] / 32) * 32 * math.ceil(fp.size_median[1] / 32) * 32
    else:
        pixels = cfg.data.size[0] * cfg.data.size[1]
    val_s = fp.valid_images * pixels / (h * w) / (rate * VAL_SPEEDUP)
    every = max(1, round(val_s / (VAL_SHARE * train_s)))
    p.set("train.val_every", every, f"one validation ({val_s:.1f} s estimated) per {every} epoch(s) of "
          f"{train_s:.1f} s keeps validation near {VAL_SHARE:.0%} of the time")
    epoch_s = train_s + val_s / cfg.train.val_every + EPOCH_OVERHEAD_S
    plan.estimate.update({"epoch_train_seconds": round(train_s, 1), "validation_seconds": round(val_s, 1),
                          "epoch_seconds": round(epoch_s, 1)})
    return epoch_s


def _budget(p: _Planner) -> None:
    cfg, plan = p.cfg, p.plan
    epoch_s = _validation(p)
    if not cfg.train.max_time:
        return
    left = cfg.train.max_time - plan.seconds / 60
    if left <= 0.05:
        raise UnetsegError(f"--max-time {cfg.train.max_time:g} minutes is used up by planning "
                           f"({plan.seconds:.0f} s); give more time or --no-plan")
    cfg.train.max_time = round(left, 3)
    epochs = left * 60 / epoch_s if epoch_s else None
    plan.estimate.update({"training_minutes": round(left, 2),
                          "epochs_in_budget": round(epochs, 1) if epochs else None})
    if not p.user("train.epochs"):
        # The budget ends training; the epoch cap only guards against a probe that was far off.
        cap = max(10, math.ceil(3 * epochs)) if epochs else cfg.train.epochs
        p.set("train.epochs", cap, f"about {epochs:.0f} epochs fit in {left:.1f} minutes; the budget stops "
              "training, this cap only guards against a wrong estimate" if epochs else "default")

