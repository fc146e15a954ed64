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
- The instance head: ``HEAD_CHANNELS`` more outputs of a model (``has_head``), ``activate_head``; an image's
  objects from it (``decode_instances``: each box the pixels of its most frequent class) or, without a head,
  from the connected components of each class (``image_objects``); ``suppress_nested`` drops a box mostly
  inside a stronger one of its class.

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

from unetseg.core.errors import UnetsegError

MAX_INSTANCES = 65535  # an instance-ID PNG is 16-bit

# The instance head: output channels after the class maps, a centre heatmap (logit) and the four edge
# distances (log(1 + pixels)); the heatmap's bias starts at the logit of HEAT_PRIOR (CenterNet's -2.19).
HEAD_CHANNELS = 5
HEAT_PRIOR = 0.1


def has_head(model_cfg: dict[str, Any]) -> bool:
    """Whether a model (its ``model`` settings, as a model file records them) has the instance head."""
    return model_cfg.get("instances") == "on"


def activate_head(head: Any) -> Any:
    """Head outputs (..., 5, H, W) -> heat probabilities and edge distances in pixels (a torch tensor)."""
    import torch

    return torch.cat([torch.sigmoid(head[..., :1, :, :]), torch.expm1(head[..., 1:, :, :].clamp(0, 20))], dim=-3)

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

    def overlap(self, other: Box) -> float:
        """The area the two boxes share."""
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return max(0.0, w) * max(0.0, h)

    def iou(self, other: Box) -> float:
        inter = self.overlap(other)
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0


def paint_boxes(boxes: list[Box], shape: tuple[int, int]) -> np.ndarray:
    """An instance-ID mask (uint16, uint32 past 65535 boxes; 0 = none, i + 1 = ``boxes[i]``) of ``shape``
    (rows, columns), larger boxes painted first so that a smaller one overlapping them stays whole."""
    ids = np.zeros(shape, np.uint16 if len(boxes) <= MAX_INSTANCES else np.uint32)
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


PEAK_THRESHOLD = 0.3  # the lowest centre-heatmap peak that counts as an object (--peak-threshold)
NESTED_SHARE = 0.8  # of the smaller box: two boxes of one class overlapping this much are one object


def suppress_nested(boxes: list[tuple[Box, int]], share: float = NESTED_SHARE) -> list[tuple[Box, int]]:
    """Boxes with their class, strongest first kept: a box whose overlap with a stronger box of its class
    covers more than ``share`` of the smaller of the two is the same object found again (a second peak inside
    it, often nested in its box, which IoU alone lets through); objects of other classes may nest."""
    ordered = sorted(boxes, key=lambda bl: -bl[0].score)
    labels = np.asarray([label for _, label in ordered])

    def inside(inter: np.ndarray, area: float, areas: np.ndarray, same: np.ndarray) -> np.ndarray:
        return same & (inter > share * np.minimum(area, areas))

    return [ordered[i] for i in _greedy([b for b, _ in ordered], inside, labels)]


def _greedy(boxes: list[Box], clash: Any, labels: np.ndarray | None = None) -> list[int]:
    """Indices of ``boxes`` (strongest first) kept greedily: a box is dropped when ``clash(inter, area, areas,
    same)`` holds for any box kept before it (``inter``: the overlaps with them, ``areas``: theirs, ``same``:
    whether their ``labels`` equal its). Vectorised over the kept boxes: thousands of peaks of a model that
    fires everywhere cost milliseconds, not minutes."""
    n = len(boxes)
    xy = np.asarray([(b.x0, b.y0, b.x1, b.y1) for b in boxes], dtype=np.float64).reshape(n, 4)
    areas = np.clip(xy[:, 2] - xy[:, 0], 0, None) * np.clip(xy[:, 3] - xy[:, 1], 0, None)
    kept = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(n):
        if k:
            idx = kept[:k]
            w = np.minimum(xy[i, 2], xy[idx, 2]) - np.maximum(xy[i, 0], xy[idx, 0])
            h = np.minimum(xy[i, 3], xy[idx, 3]) - np.maximum(xy[i, 1], xy[idx, 1])
            inter = np.clip(w, 0, None) * np.clip(h, 0, None)
            same = labels[idx] == labels[i] if labels is not None else np.ones(k, bool)
            if clash(inter, areas[i], areas[idx], same).any():
                continue
        kept[k] = i
        k += 1
    return kept[:k].tolist()


def nested(a: Box, b: Box, share: float = NESTED_SHARE) -> bool:
    """Whether the overlap of two boxes covers more than ``share`` of the smaller one."""
    return a.overlap(b) > share * min(a.area, b.area)


def decode_instances(mask: np.ndarray, head: np.ndarray, threshold: float = PEAK_THRESHOLD
                     ) -> tuple[np.ndarray, list[int], list[float]]:
    """Objects of an image from the instance head (5, H, W) and the class mask: each peak's box (see
    ``decode_centres``) holds one object, the pixels of the box's most frequent foreground class, smaller boxes
    painted over larger ones; a box without foreground pixels is no object. Returns instance IDs (uint16),
    each ID's class (``labels[k - 1]``) and its score (the heatmap peak)."""
    classes = int(mask.max()) + 1  # a predicted mask holds classes only
    labelled = []
    for b in decode_centres(head[0], head[1:], threshold, max_instances=MAX_INSTANCES):
        label = box_class(mask, b, classes)
        if label:
            labelled.append((b, label))
    ids = np.zeros(mask.shape, np.uint16)
    labels: list[int] = []
    scores: list[float] = []
    for b, label in sorted(suppress_nested(labelled), key=lambda bl: -bl[0].area):
        ids[box_pixels(b)][mask[box_pixels(b)] == label] = len(labels) + 1
        labels.append(label)
        scores.append(round(float(b.score), 4))
    return ids, labels, scores


def box_class(mask: np.ndarray, b: Box, classes: int) -> int:
    """The foreground class (1..``classes - 1``; other values, such as an ignore value, do not vote) most of a
    box's mask pixels hold, the lowest on a tie; 0 when none is there."""
    votes = np.bincount(mask[box_pixels(b)].ravel().astype(np.int64), minlength=classes)[1:classes]
    return int(votes.argmax()) + 1 if votes.any() else 0


def box_pixels(b: Box) -> tuple[slice, slice]:
    """The pixels a box covers (at least one)."""
    x0, y0 = int(np.floor(b.x0)), int(np.floor(b.y0))
    return slice(y0, max(y0 + 1, int(np.ceil(b.y1)))), slice(x0, max(x0 + 1, int(np.ceil(b.x1))))


def image_objects(mask: np.ndarray, probs: np.ndarray, head: np.ndarray | None = None,
                  threshold: float = PEAK_THRESHOLD) -> tuple[np.ndarray, list[int], list[float]]:
    """The objects of a predicted image: the instance head's (``head`` given) or else each connected component
    of each class, scored by its mean probability. ``probs``: class probabilities (C, H, W) (C = 1: binary)."""
    if head is not None:
        return decode_instances(mask, head, threshold)
    classes = max(2, probs.shape[0])
    ids = component_ids(mask, classes)
    labels, scores = [], []
    if ids.max():
        from scipy import ndimage

        index = np.arange(1, int(ids.max()) + 1)
        labels = [int(v) for v in ndimage.maximum(mask, ids, index)]
        own = probs[0] if probs.shape[0] == 1 else np.take_along_axis(probs, mask[None].astype(np.int64), 0)[0]
        scores = [round(float(v), 4) for v in ndimage.mean(own, ids, index)]  # each pixel's own class
    return ids, labels, scores


def instance_boxes(ids: np.ndarray) -> dict[int, Box]:
    """The box of each instance ID's visible pixels (half-open)."""
    from scipy import ndimage

    out = {}
    for k, found in enumerate(ndimage.find_objects(ids.astype(np.int32)), start=1):
        if found is not None:
            rows, cols = found
            out[k] = Box(float(cols.start), float(rows.start), float(cols.stop), float(rows.stop))
    return out


def centre_targets(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets of an instance-ID mask: heatmap (H, W) in [0, 1] with 1 at each box centre; edges
    (4, H, W): distances from the centre pixel to the box's left, top, right and bottom edges, at the centre
    pixels; and the (H, W) bool mask of those pixels. Each Gaussian is drawn inside its own box (where it
    is above about 1%)."""
    h, w = ids.shape
    heat = np.zeros((h, w), np.float32)
    size = np.zeros((4, h, w), np.float32)
    where = np.zeros((h, w), bool)
    for box in instance_boxes(ids).values():
        x0, y0, x1, y1 = int(box.x0), int(box.y0), int(box.x1), int(box.y1)
        cx, cy = min((x0 + x1) // 2, w - 1), min((y0 + y1) // 2, h - 1)
        sx, sy = max((x1 - x0) * SIGMA_SHARE, 0.5), max((y1 - y0) * SIGMA_SHARE, 0.5)
        xs = np.arange(x0, x1, dtype=np.float32)[None, :]
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        gauss = np.exp(-((xs - cx) ** 2) / (2 * sx * sx) - ((ys - cy) ** 2) / (2 * sy * sy))
        np.maximum(heat[y0:y1, x0:x1], gauss, out=heat[y0:y1, x0:x1])
        size[:, cy, cx] = (cx - x0, cy - y0, x1 - cx, y1 - cy)
        where[cy, cx] = True
    heat[where] = 1.0
    return heat, size, where


def neighbourhood_max(heat: np.ndarray) -> np.ndarray:
    """The maximum of each pixel's 3x3 neighbourhood (outside the image: -inf), as
    ``scipy.ndimage.maximum_filter(heat, 3, mode="constant", cval=-inf)`` gives it, in two separable passes of
    ``np.maximum`` (4x faster: detect decodes a heat map for every block of a recording)."""
    h, w = heat.shape
    padded = np.full((h + 2, w + 2), -np.inf, heat.dtype)
    padded[1:-1, 1:-1] = heat
    rows = np.maximum(np.maximum(padded[:, :-2], padded[:, 1:-1]), padded[:, 2:])
    return np.maximum(np.maximum(rows[:-2], rows[1:-1]), rows[2:])


def decode_centres(heat: np.ndarray, edges: np.ndarray, threshold: float = PEAK_THRESHOLD, nms_iou: float = 0.5,
                   max_instances: int = 1000, peak_columns: int | None = None) -> list[Box]:
    """Boxes from a heatmap (H, W) and edge distances (4, H, W): peaks (the maximum of their 3x3
    neighbourhood) above ``threshold``, strongest first, each the box its edge distances give; a box
    overlapping a stronger one by IoU above ``nms_iou`` is dropped. ``peak_columns``: only peaks in the
    columns before it (the columns after only decide the peaks at its edge)."""
    h, w = heat.shape
    peaks = (heat >= neighbourhood_max(heat)) & (heat > threshold)
    if peak_columns is not None:
        peaks[:, peak_columns:] = False
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-heat[ys, xs], kind="stable")[:max_instances]
    candidates = []
    for i in order:
        y, x = int(ys[i]), int(xs[i])
        left, top, right, bottom = (float(max(v, 0.0)) for v in edges[:, y, x])
        candidates.append(Box(max(0.0, x - left), max(0.0, y - top), min(float(w), x + max(right, 1.0)),
                              min(float(h), y + max(bottom, 1.0)), float(heat[y, x])))

    def overlapping(inter: np.ndarray, area: float, areas: np.ndarray, same: np.ndarray) -> np.ndarray:
        union = area + areas - inter
        return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0) > nms_iou

    return [candidates[i] for i in _greedy(candidates, overlapping)]


def coco_average_precision(truth: dict[str, Any], results: list[dict[str, Any]], iou_type: str = "bbox"
                           ) -> dict[str, float | None]:
    """COCO AP of ``results`` (COCO results: image_id, category_id, score and bbox or segmentation) against
    the COCO dataset ``truth``, every object size together and up to as many detections per image as given:
    AP@[.5:.95], AP@0.5 and AP@0.75 averaged over the categories, and AP@0.5 of each (``ap50_per_category``,
    by category id; None for a category without truth objects). None without truth objects; 0 without
    results."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    present = sorted({int(a["category_id"]) for a in truth.get("annotations", [])})
    if not present:
        return {"ap": None, "ap50": None, "ap75": None, "ap50_per_category": {}}
    if not results:
        return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0, "ap50_per_category": {str(c): 0.0 for c in present}}
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

    at50 = precision[np.isclose(thresholds, 0.5)]
    per_category = {str(c): mean(at50[:, :, k]) if (at50[:, :, k] > -1).any() else None
                    for k, c in enumerate(evaluation.params.catIds)}
    return {"ap": mean(precision), "ap50": mean(at50), "ap75": mean(precision[np.isclose(thresholds, 0.75)]),
            "ap50_per_category": per_category}
