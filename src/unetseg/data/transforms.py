"""Fitting images to the network input and back, augmentation, and normalisation.

Geometry is done here rather than inside albumentations so that prediction can undo it exactly:
``plan_placement`` says where the original image lands in the network input, ``fit_image`` /
``fit_mask`` put it there, and ``restore`` brings network outputs back to the original size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch
import torch.nn.functional as F

from unetseg.core.config import AugmentConfig
from unetseg.core.errors import UnetsegError
from unetseg.data.images import IGNORE
from unetseg.data.inputspec import RESIZE_MODES, InputSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Placement:
    """Where an image of ``orig`` (h, w) sits, scaled to ``scaled``, inside an ``out`` canvas."""

    orig: tuple[int, int]
    scaled: tuple[int, int]
    top: int
    left: int
    out: tuple[int, int]


def plan_placement(orig: tuple[int, int], size: tuple[int, int] | None, mode: str,
                   divisor: int = 32) -> Placement:
    h, w = orig
    if mode == "resize":
        assert size is not None
        return Placement(orig, tuple(size), 0, 0, tuple(size))
    if mode == "letterbox":
        assert size is not None
        s = min(size[0] / h, size[1] / w)
        sh, sw = min(size[0], max(1, round(h * s))), min(size[1], max(1, round(w * s)))
        return Placement(orig, (sh, sw), (size[0] - sh) // 2, (size[1] - sw) // 2, tuple(size))
    if mode == "pad":
        out = (math.ceil(h / divisor) * divisor, math.ceil(w / divisor) * divisor)
        return Placement(orig, orig, 0, 0, out)
    raise UnetsegError(f"unknown resize mode {mode!r} (expected {', '.join(RESIZE_MODES)})")


def check_size(size: list[int] | None, mode: str, divisor: int) -> None:
    """Network sizes must divide by the model's total stride; say which size to use instead."""
    if mode == "pad":
        return
    if size is None:
        raise UnetsegError(f"resize mode {mode} needs --size HxW")
    if size[0] % divisor or size[1] % divisor:
        fix = "x".join(str(max(divisor, round(v / divisor) * divisor)) for v in size)
        raise UnetsegError(f"input size {size[0]}x{size[1]} is not divisible by {divisor} "
                           f"(the model's down-sampling); use --size {fix}")


def fit_image(image: np.ndarray, p: Placement) -> np.ndarray:
    """Place a HxWxC float image into the network canvas (zeros outside)."""
    if p.scaled != p.orig:
        interp = cv2.INTER_AREA if p.scaled[0] < p.orig[0] else cv2.INTER_LINEAR
        image = cv2.resize(image, (p.scaled[1], p.scaled[0]), interpolation=interp)
        if image.ndim == 2:
            image = image[:, :, None]
    if p.out == p.scaled:
        return image
    canvas = np.zeros((*p.out, image.shape[2]), dtype=image.dtype)
    canvas[p.top:p.top + p.scaled[0], p.left:p.left + p.scaled[1]] = image
    return canvas


def fit_mask(mask: np.ndarray, p: Placement, fill: int = IGNORE) -> np.ndarray:
    """Place a class-index mask (or instance IDs, ``fill`` 0) into the canvas; padding is ``fill``, by default
    ``IGNORE`` so it never counts."""
    if p.scaled != p.orig:
        mask = cv2.resize(mask, (p.scaled[1], p.scaled[0]), interpolation=cv2.INTER_NEAREST)
    if p.out == p.scaled:
        return mask
    canvas = np.full(p.out, fill, dtype=mask.dtype)
    canvas[p.top:p.top + p.scaled[0], p.left:p.left + p.scaled[1]] = mask
    return canvas


def restore(outputs: torch.Tensor, p: Placement) -> torch.Tensor:
    """Network outputs (C, H, W), logits or probabilities, back at the original image size."""
    x = outputs[:, p.top:p.top + p.scaled[0], p.left:p.left + p.scaled[1]]
    if p.scaled != p.orig:
        x = F.interpolate(x[None], size=p.orig, mode="bilinear", align_corners=False)[0]
    return x


def build_augment(crop: list[int] | None, augment: AugmentConfig) -> A.Compose | None:
    """Training-time transforms on the fitted image and mask (none at validation): the random ``crop`` and
    the flips, affine and colour changes of ``augment``."""
    a = augment
    enabled, hflip, vflip, rotate, scale = a.enabled, a.hflip, a.vflip, a.rotate, a.scale
    affine_p, brightness, contrast, color_p = a.affine_p, a.brightness, a.contrast, a.color_p
    steps: list = []
    if crop:
        steps.append(A.RandomCrop(crop[0], crop[1], pad_if_needed=True, fill=0, fill_mask=IGNORE))
    if enabled:
        if hflip > 0:
            steps.append(A.HorizontalFlip(p=hflip))
        if vflip > 0:
            steps.append(A.VerticalFlip(p=vflip))
        if (rotate > 0 or scale > 0) and affine_p > 0:
            steps.append(A.Affine(rotate=(-rotate, rotate), scale=(1 - scale, 1 + scale),
                                  fill=0, fill_mask=IGNORE, p=affine_p))
        if (brightness > 0 or contrast > 0) and color_p > 0:
            steps.append(A.RandomBrightnessContrast(brightness, contrast, p=color_p))
    return A.Compose(steps) if steps else None


def normalize(image: np.ndarray, mean: list[float], std: list[float]) -> torch.Tensor:
    """HxWxC float image -> normalised CxHxW tensor: written straight into the CxHxW array (no temporaries:
    at 1024 px, 7x faster than three arrays, with the same bits)."""
    out = np.empty((image.shape[2], *image.shape[:2]), np.float32)
    np.subtract(image.transpose(2, 0, 1), np.asarray(mean, np.float32)[:, None, None], out=out)
    out /= np.asarray(std, np.float32)[:, None, None]
    return torch.from_numpy(out)


def prepare_input(image: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Placement]:
    """``image`` fitted to the network input ``spec`` records, and where it was placed (to restore outputs)."""
    placement = plan_placement(image.shape[:2], spec.size, spec.mode, spec.divisor)
    return fit_image(image, placement), placement
