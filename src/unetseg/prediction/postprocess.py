"""Probabilities -> post-processed class masks (``to_mask``), and masks -> polygons.

Binary masks: opening/closing, removal of foreground components under ``min_size`` pixels and hole
filling act on the foreground. Multi-class masks: opening, closing and hole filling act on each class
>= 1 in turn (class 0 taken as background); a component of any class under ``min_size`` pixels takes the
most common class around it.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import torch

from unetseg.inference.classes import to_classes
from unetseg.models.modelfile import LoadedModel
from unetseg.prediction.settings import PostProcess


def threshold_for(loaded: LoadedModel, pp: PostProcess | None = None) -> float:
    """The foreground cut-off: ``pp``'s when it names one, else the model's."""
    return loaded.threshold if pp is None or pp.threshold is None else pp.threshold


def to_mask(probs: torch.Tensor | np.ndarray, loaded: LoadedModel, pp: PostProcess | None = None) -> np.ndarray:
    """Probabilities (C, H, W) of ``loaded``'s model -> class mask (H, W), thresholded and cleaned by ``pp``."""
    pp = pp or PostProcess()
    probs = probs.numpy() if isinstance(probs, torch.Tensor) else probs
    return postprocess_mask(to_classes(probs, loaded.binary, threshold_for(loaded, pp)), pp, loaded.binary)


def _kernel(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def clean_binary(fg: np.ndarray, pp: PostProcess) -> np.ndarray:
    """Apply opening, closing, small-component removal and hole filling to a boolean mask."""
    m = fg.astype(np.uint8)
    if pp.open_px:
        m = cv2.morphologyEx(m, cv2.MORPH_OPEN, _kernel(pp.open_px))
    if pp.close_px:
        m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, _kernel(pp.close_px))
    if pp.min_size:
        m = remove_small_components(m.astype(bool), pp.min_size).astype(np.uint8)
    if pp.fill_holes:
        m = fill_holes(m.astype(bool)).astype(np.uint8)
    return m.astype(bool)


def remove_small_components(fg: np.ndarray, min_size: int) -> np.ndarray:
    """Drop 8-connected components with fewer than ``min_size`` pixels."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_size
    return keep[labels]


def fill_holes(fg: np.ndarray) -> np.ndarray:
    """Fill background regions not connected to the image border."""
    h, w = fg.shape
    outside = np.pad(~fg, 1, constant_values=True).astype(np.uint8)
    flood = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(outside, flood, (0, 0), 2)
    return fg | (outside[1:-1, 1:-1] == 1)


def postprocess_mask(mask: np.ndarray, pp: PostProcess, binary: bool) -> np.ndarray:
    """Clean a class-index mask (uint8, H x W)."""
    if not pp.active:
        return mask
    if binary:
        return clean_binary(mask == 1, pp).astype(np.uint8)
    out = mask.copy()
    shape_only = replace(pp, min_size=0)
    if shape_only.active:
        cleaned = np.zeros_like(mask)
        for c in np.unique(mask):
            if c == 0:
                continue
            cleaned[clean_binary(mask == c, shape_only)] = c
        out = cleaned
    if pp.min_size:
        out = _absorb_small_regions(out, pp.min_size)
    return out


def _absorb_small_regions(mask: np.ndarray, min_size: int) -> np.ndarray:
    out = mask.copy()
    ring = _kernel(1)
    for c in np.unique(mask):
        n, labels, stats, _ = cv2.connectedComponentsWithStats((mask == c).astype(np.uint8), connectivity=8)
        for i in np.nonzero(stats[1:, cv2.CC_STAT_AREA] < min_size)[0] + 1:
            comp = labels == i
            border = cv2.dilate(comp.astype(np.uint8), ring).astype(bool) & ~comp
            if border.any():
                out[comp] = np.bincount(out[border]).argmax()
    return out


def mask_to_polygons(mask: np.ndarray, classes: list[str], binary: bool) -> list[dict]:
    """One entry per connected region: class, area in pixels, outer polygon and holes as (x, y) pixel centres."""
    objects = []
    targets = [1] if binary else [int(c) for c in np.unique(mask) if c < len(classes)]
    for c in targets:
        region = (mask == c).astype(np.uint8)
        contours, hierarchy = cv2.findContours(region, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        if hierarchy is None:
            continue
        hierarchy = hierarchy[0]
        for i, contour in enumerate(contours):
            if hierarchy[i][3] != -1:  # a hole; reported with its outer contour
                continue
            holes = [contours[j] for j in range(len(contours)) if hierarchy[j][3] == i]
            inside = cv2.drawContours(np.zeros_like(region), [contour], -1, 1, thickness=cv2.FILLED)
            area = int((region & inside).sum())  # pixels of the region, holes excluded
            objects.append({
                "class": classes[c], "class_index": c, "area": area,
                "polygon": contour[:, 0, :].tolist(),
                "holes": [h[:, 0, :].tolist() for h in holes],
            })
    return objects
