"""Instances as a centre heatmap and a box size, the way CenterNet (Zhou et al. 2019) finds objects and
batdetect2 finds bat calls: pure functions from instance-ID masks to training targets, and from predicted
maps back to boxes.

- ``paint_boxes``: boxes (each one instance: a Raven selection, a COCO box) -> an instance-ID mask, the
  smaller box on top where two overlap (as COCO masks are painted), so each keeps a visible centre.
- ``centre_targets``: an instance-ID mask (from boxes, COCO polygons or an instance-ID PNG, after the same
  crops and flips as the image) -> a heatmap with a Gaussian at each instance's box centre (sigma a sixth
  of the box side, per axis), the distances from the centre pixel to the box's four edges (left, top,
  right, bottom: the box size and the centre's sub-pixel offset in one, as FCOS regresses them), and where
  they are set.
- ``decode_centres``: predicted heatmap and edge distances -> boxes: local maxima over a 3x3 neighbourhood
  above a threshold, each read out as the box its edge distances give, then non-maximum suppression.

``coco_average_precision`` scores instances (image boxes or masks, spectrogram boxes) against truth with
pycocotools' COCOeval: AP@[.5:.95], AP@0.5 and AP@0.75.

Coordinates are pixels: ``x`` columns (time in a spectrogram), ``y`` rows; boxes are half-open
``[x0, x1) x [y0, y1)``.
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import UnetsegError

MAX_INSTANCES = 65535  # an instance-ID PNG is 16-bit

SIGMA_SHARE = 1 / 6  # of a box side: the Gaussian falls to about 1% at the box's edge


@dataclass(frozen=True)
class Box:
    """An instance's box in pixels, half-open, with its score (heatmap peak) and class (0: unknown)."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0
    label: int = 0

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    def iou(self, other: Box) -> float:
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        inter = max(0.0, w) * max(0.0, h)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


def paint_boxes(boxes: list[Box], shape: tuple[int, int]) -> np.ndarray:
    """An instance-ID mask (uint16; 0 = none, i + 1 = ``boxes[i]``) of ``shape`` (rows, columns), larger boxes
    painted first so that a smaller one overlapping them stays whole."""
    ids = np.zeros(shape, np.uint16)
    order = sorted(range(len(boxes)), key=lambda i: -boxes[i].area)
    for i in order:
        b = boxes[i]
        x0, x1 = max(0, int(np.floor(b.x0))), min(shape[1], int(np.ceil(b.x1)))
        y0, y1 = max(0, int(np.floor(b.y0))), min(shape[0], int(np.ceil(b.y1)))
        ids[y0:y1, x0:x1] = i + 1
    return ids


def component_ids(mask: np.ndarray, classes: int) -> np.ndarray:
    """Instance IDs (uint16; 0 = none) of a class mask as objects are decoded without an instance head: each
    8-connected component of each class 1..``classes - 1`` its own ID, numbered class by class."""
    import cv2

    ids = np.zeros(mask.shape, np.uint16)
    count = 0
    for c in range(1, classes):
        n, labels = cv2.connectedComponents((mask == c).astype(np.uint8), connectivity=8)
        if n <= 1:
            continue
        if count + n - 1 > MAX_INSTANCES:
            raise UnetsegError(f"more than {MAX_INSTANCES} objects in one image: an instance-ID PNG cannot hold them")
        inside = labels > 0
        ids[inside] = labels[inside] + count
        count += n - 1
    return ids


def instance_boxes(ids: np.ndarray) -> dict[int, Box]:
    """The box of each instance ID's visible pixels (half-open)."""
    out = {}
    for k in np.unique(ids):
        if k == 0:
            continue
        rows, cols = np.nonzero(ids == k)
        out[int(k)] = Box(float(cols.min()), float(rows.min()), float(cols.max() + 1), float(rows.max() + 1))
    return out


def centre_targets(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets of an instance-ID mask: heatmap (H, W) in [0, 1] with 1 at each box centre; edges
    (4, H, W): distances from the centre pixel to the box's left, top, right and bottom edges, at the centre
    pixels; and the (H, W) bool mask of those pixels."""
    h, w = ids.shape
    heat = np.zeros((h, w), np.float32)
    size = np.zeros((4, h, w), np.float32)
    where = np.zeros((h, w), bool)
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    for box in instance_boxes(ids).values():
        bw, bh = box.x1 - box.x0, box.y1 - box.y0
        cx, cy = min(int((box.x0 + box.x1) / 2), w - 1), min(int((box.y0 + box.y1) / 2), h - 1)
        sx, sy = max(bw * SIGMA_SHARE, 0.5), max(bh * SIGMA_SHARE, 0.5)
        gauss = np.exp(-((xs - cx) ** 2) / (2 * sx * sx) - ((ys - cy) ** 2) / (2 * sy * sy))
        np.maximum(heat, gauss, out=heat)
        size[:, cy, cx] = (cx - box.x0, cy - box.y0, box.x1 - cx, box.y1 - cy)
        where[cy, cx] = True
    heat[where] = 1.0
    return heat, size, where


def decode_centres(heat: np.ndarray, edges: np.ndarray, threshold: float = 0.3, nms_iou: float = 0.5,
                   max_instances: int = 1000) -> list[Box]:
    """Boxes from a heatmap (H, W) and edge distances (4, H, W): peaks (the maximum of their 3x3
    neighbourhood) above ``threshold``, strongest first, each the box its edge distances give; a box
    overlapping a stronger one by IoU above ``nms_iou`` is dropped."""
    h, w = heat.shape
    padded = np.pad(heat, 1, constant_values=-np.inf)
    neighbours = np.max(np.stack([padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)]), axis=0)
    ys, xs = np.nonzero((heat >= neighbours) & (heat > threshold))
    order = np.argsort(-heat[ys, xs], kind="stable")[:max_instances]
    kept: list[Box] = []
    for i in order:
        y, x = int(ys[i]), int(xs[i])
        left, top, right, bottom = (float(max(v, 0.0)) for v in edges[:, y, x])
        box = Box(max(0.0, x - left), max(0.0, y - top), min(float(w), x + max(right, 1.0)),
                  min(float(h), y + max(bottom, 1.0)), float(heat[y, x]))
        if all(box.iou(k) <= nms_iou for k in kept):
            kept.append(box)
    return kept


def coco_average_precision(truth: dict[str, Any], results: list[dict[str, Any]], iou_type: str = "bbox"
                           ) -> dict[str, float | None]:
    """COCO AP of ``results`` (COCO results: image_id, category_id, score and bbox or segmentation) against
    the COCO dataset ``truth``, every object size together and up to as many detections per image as given.
    None without truth objects; 0 without results."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not truth.get("annotations"):
        return {"ap": None, "ap50": None, "ap75": None}
    if not results:
        return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools narrates on stdout
        gt = COCO()
        gt.dataset = truth
        gt.createIndex()
        found = gt.loadRes(copy.deepcopy(results))  # loadRes writes into the results it is given
        evaluation = COCOeval(gt, found, iou_type)
        evaluation.params.areaRng, evaluation.params.areaRngLbl = [[0.0, float("inf")]], ["all"]
        per_image: dict[Any, int] = {}
        for r in results:
            per_image[r["image_id"]] = per_image.get(r["image_id"], 0) + 1
        evaluation.params.maxDets = [max(100, *per_image.values())]
        evaluation.evaluate()
        evaluation.accumulate()
    precision = evaluation.eval["precision"][:, :, :, 0, -1]  # (IoU thresholds, recall points, classes)
    thresholds = evaluation.params.iouThrs

    def mean(p: np.ndarray) -> float:
        p = p[p > -1]
        return round(float(p.mean()), 4) if p.size else 0.0

    return {"ap": mean(precision), "ap50": mean(precision[np.isclose(thresholds, 0.5)]),
            "ap75": mean(precision[np.isclose(thresholds, 0.75)])}
