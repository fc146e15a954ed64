"""Event metrics against reference annotations, and SDR for denoised audio.

- Event-based (onset/offset): an estimated event matches a reference event of the same label when its
  onset lies within ``collar`` seconds of the reference onset and its offset within
  max(``collar``, ``offset_ratio`` x reference duration) of the reference offset (DCASE's rule,
  Mesaros et al. 2016); each event matches at most once (maximum bipartite matching).
- Box-based: events with time and frequency boxes match one-to-one when their time x frequency IoU
  reaches a threshold (0.3 by default); time-only references fall back to onset/offset matching.
- Average precision: COCO AP of the events as boxes (pycocotools' COCOeval, one image per recording; a
  time x frequency box is an image box), AP@[.5:.95], AP@0.5 and AP@0.75, ranked by the events' scores;
  against time-only references the boxes span time only (temporal IoU).
- False alarms per minute: estimated events matching no reference event, per minute of audio.
- Frame-based: activity sampled every ``frame`` seconds per label; F1 over all frames.
- Segment error rate: ``segment``-second segments; ER = (substitutions + deletions + insertions) /
  reference activity, as in Mesaros et al. 2016.
- SDR: 10 log10(sum s^2 / sum (s - s_hat)^2) of the estimate against the clean reference.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..instances import coco_average_precision
from .annotations import Event


def _prf(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "tp": tp, "fp": fp, "fn": fn}


def _label(e: Event, ignore_labels: bool) -> str:
    return "" if ignore_labels else e.label


def match_events(reference: list[Event], estimated: list[Event], collar: float = 0.05, offset_ratio: float = 0.2,
                 ignore_labels: bool = False) -> list[tuple[int, int]]:
    """Pairs (reference index, estimate index) of matched events."""
    if not reference or not estimated:
        return []
    ok = np.zeros((len(reference), len(estimated)), bool)
    cost = np.zeros(ok.shape)
    for i, r in enumerate(reference):
        off_tol = max(collar, offset_ratio * r.duration)
        for j, e in enumerate(estimated):
            if _label(r, ignore_labels) != _label(e, ignore_labels):
                continue
            d_on, d_off = abs(e.begin - r.begin), abs(e.end - r.end)
            if d_on <= collar and d_off <= off_tol:
                ok[i, j] = True
                cost[i, j] = d_on + d_off
    big = 1e6
    rows, cols = linear_sum_assignment(np.where(ok, cost, big))
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if ok[i, j]]


def event_scores(reference: list[Event], estimated: list[Event], collar: float = 0.05, offset_ratio: float = 0.2,
                 ignore_labels: bool = False) -> dict[str, float | int]:
    tp = len(match_events(reference, estimated, collar, offset_ratio, ignore_labels))
    return _prf(tp, len(estimated) - tp, len(reference) - tp)


def box_iou(a: Event, b: Event) -> float:
    """Intersection over union of two events' time x frequency boxes (0 when either has no band)."""
    if None in (a.low, a.high, b.low, b.high):
        return 0.0
    t = max(0.0, min(a.end, b.end) - max(a.begin, b.begin))
    f = max(0.0, min(a.high, b.high) - max(a.low, b.low))  # type: ignore[type-var]
    inter = t * f
    union = a.duration * (a.high - a.low) + b.duration * (b.high - b.low) - inter  # type: ignore[operator]
    return inter / union if union > 0 else 0.0


def average_precision(reference: list[Event], estimated: list[Event], ignore_labels: bool = False
                      ) -> dict[str, float | None]:
    """COCO AP of ``estimated`` event boxes against ``reference`` (see the module notes); None without
    reference events. Events of no score rank as 1."""
    time_only = any(e.low is None or e.high is None for e in reference)

    def box(e: Event) -> list[float]:
        if time_only or e.low is None or e.high is None:
            return [e.begin, 0.0, e.duration, 1.0]
        return [e.begin, float(e.low), e.duration, float(e.high - e.low)]

    truth_boxes = [box(e) for e in reference]

    files = {name: i + 1 for i, name in enumerate(sorted({e.file or "" for e in reference + estimated}))}
    labels = {name: i + 1 for i, name in enumerate(sorted({_label(e, ignore_labels) for e in reference + estimated}))}
    truth = {
        "images": [{"id": i} for i in files.values()],
        "categories": [{"id": i, "name": name or "event"} for name, i in labels.items()],
        "annotations": [{"id": k + 1, "image_id": files[e.file or ""], "category_id": labels[_label(e, ignore_labels)],
                         "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                        for k, (e, b) in enumerate(zip(reference, truth_boxes, strict=True))]}
    results = [{"image_id": files[e.file or ""], "category_id": labels[_label(e, ignore_labels)], "bbox": box(e),
                "score": 1.0 if e.score is None else float(e.score)} for e in estimated]
    return coco_average_precision(truth, results, "bbox")


def box_scores(reference: list[Event], estimated: list[Event], min_iou: float = 0.3, collar: float = 0.05,
               ignore_labels: bool = False) -> dict[str, float | int | str]:
    """Box-level precision, recall and F1: events match one-to-one (maximum total IoU) when their time x
    frequency IoU is at least ``min_iou`` and their labels agree. A reference without bands (time-only)
    falls back to onset/offset matching (``event_scores`` with ``collar``)."""
    if any(e.low is None or e.high is None for e in reference):
        return {**event_scores(reference, estimated, collar, ignore_labels=ignore_labels), "matched_by": "onset/offset"}
    tp = 0
    if reference and estimated:
        iou = np.array([[box_iou(r, e) if _label(r, ignore_labels) == _label(e, ignore_labels) else 0.0
                         for e in estimated] for r in reference])
        rows, cols = linear_sum_assignment(-iou)
        tp = int((iou[rows, cols] >= min_iou).sum())
    return {**_prf(tp, len(estimated) - tp, len(reference) - tp), "matched_by": f"box IoU >= {min_iou:g}"}


def false_alarms_per_minute(reference: list[Event], estimated: list[Event], duration: float,
                            collar: float = 0.05, ignore_labels: bool = False) -> float:
    """Estimated events that match no reference event (onset/offset rule), per minute of audio; on a
    recording without the target (empty reference) every event is a false alarm."""
    matched = len(match_events(reference, estimated, collar, ignore_labels=ignore_labels))
    return round((len(estimated) - matched) / max(duration / 60, 1e-9), 2)


def _activity(events: list[Event], labels: list[str], step: float, n: int, ignore_labels: bool) -> np.ndarray:
    act = np.zeros((len(labels), n), bool)
    for e in events:
        k = labels.index(_label(e, ignore_labels))
        a, b = int(math.floor(e.begin / step)), int(math.ceil(e.end / step))
        act[k, max(a, 0):min(b, n)] = True
    return act


def frame_scores(reference: list[Event], estimated: list[Event], duration: float, frame: float = 0.01,
                 ignore_labels: bool = False) -> dict[str, float | int]:
    labels = sorted({_label(e, ignore_labels) for e in reference + estimated})
    n = int(math.ceil(duration / frame))
    ref = _activity(reference, labels, frame, n, ignore_labels)
    est = _activity(estimated, labels, frame, n, ignore_labels)
    return _prf(int((ref & est).sum()), int((~ref & est).sum()), int((ref & ~est).sum()))


def segment_error_rate(reference: list[Event], estimated: list[Event], duration: float, segment: float = 1.0,
                       ignore_labels: bool = False) -> dict[str, float | int]:
    labels = sorted({_label(e, ignore_labels) for e in reference + estimated})
    n = max(1, int(math.ceil(duration / segment)))
    ref = _activity(reference, labels, segment, n, ignore_labels)
    est = _activity(estimated, labels, segment, n, ignore_labels)
    fn = (ref & ~est).sum(axis=0)
    fp = (~ref & est).sum(axis=0)
    subs = np.minimum(fn, fp)
    dels = np.maximum(0, fn - fp)
    ins = np.maximum(0, fp - fn)
    total = int(ref.sum())
    er = (subs.sum() + dels.sum() + ins.sum()) / total if total else float(ins.sum() > 0)
    return {"error_rate": round(float(er), 4), "substitutions": int(subs.sum()), "deletions": int(dels.sum()),
            "insertions": int(ins.sum()), "reference_active": total}


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB over the samples both signals have."""
    n = min(len(reference), len(estimate))
    r, e = reference[:n].astype(np.float64), estimate[:n].astype(np.float64)
    noise = float(((r - e) ** 2).sum())
    return float("inf") if noise == 0 else round(10 * math.log10(float((r**2).sum()) / noise), 4)
