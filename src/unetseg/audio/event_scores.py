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

Written here rather than taken from sed_eval / sed_scores_eval (neither a dependency): their segment and
frame metrics build per-segment activity arrays over a whole file, and these run on intervals and candidate
pairs in bounded memory (an event ending at 1e9 s costs nothing); box IoU matching and the COCO AP of
time-frequency boxes have no counterpart there.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator

import numpy as np
from scipy.optimize import linear_sum_assignment

from unetseg.audio.annotations import Event
from unetseg.instances.centres import coco_average_precision


def _prf(tp: int, fp: int, fn: int) -> dict[str, float | int]:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "tp": tp, "fp": fp, "fn": fn}


def _label(e: Event, ignore_labels: bool) -> str:
    return "" if ignore_labels else e.label


def _assign(pairs: dict[tuple[int, int], float]) -> list[tuple[int, int]]:
    """The one-to-one matching of least total cost among the allowed ``pairs`` ((reference, estimate) -> cost),
    solved per connected group of pairs: memory grows with the pairs that can match, not with references x
    estimates (20,000 x 20,000 events no longer ask 3 GB)."""
    parent: dict[tuple[str, int], tuple[str, int]] = {}

    def root(x: tuple[str, int]) -> tuple[str, int]:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in pairs:
        parent[root(("r", i))] = root(("e", j))
    groups: dict[tuple[str, int], list[tuple[int, int]]] = {}
    for i, j in pairs:
        groups.setdefault(root(("r", i)), []).append((i, j))
    matched = []
    for members in groups.values():
        refs = sorted({i for i, _ in members})
        ests = sorted({j for _, j in members})
        cost = np.full((len(refs), len(ests)), 1e9)
        ri, ej = {r: k for k, r in enumerate(refs)}, {e: k for k, e in enumerate(ests)}
        for i, j in members:
            cost[ri[i], ej[j]] = pairs[(i, j)]
        rows, cols = linear_sum_assignment(cost)
        matched += [(refs[r], ests[c]) for r, c in zip(rows, cols, strict=True) if cost[r, c] < 1e9]
    return sorted(matched)


def _overlapping(reference: list[Event], estimated: list[Event], before: float, after: float, by_end: bool = False
                 ) -> Iterator[tuple[int, int]]:
    """(reference, estimate) index pairs whose onsets lie within ``before``/``after`` s of each other, or (with
    ``by_end``) whose spans overlap; found by sorted onsets, not by trying every pair."""
    order = sorted(range(len(estimated)), key=lambda j: estimated[j].begin)
    onsets = [estimated[j].begin for j in order]
    longest = max((e.duration for e in estimated), default=0.0)
    for i, r in enumerate(reference):
        low, high = (r.begin - longest, r.end) if by_end else (r.begin - before, r.begin + after)
        for k in range(bisect.bisect_left(onsets, low), bisect.bisect_right(onsets, high)):
            j = order[k]
            if not by_end or (estimated[j].end > r.begin and estimated[j].begin < r.end):
                yield i, j


def match_events(reference: list[Event], estimated: list[Event], collar: float = 0.05, offset_ratio: float = 0.2,
                 ignore_labels: bool = False) -> list[tuple[int, int]]:
    """Pairs (reference index, estimate index) of matched events."""
    pairs = {}
    for i, j in _overlapping(reference, estimated, collar, collar):
        r, e = reference[i], estimated[j]
        if _label(r, ignore_labels) != _label(e, ignore_labels):
            continue
        d_on, d_off = abs(e.begin - r.begin), abs(e.end - r.end)
        if d_on <= collar and d_off <= max(collar, offset_ratio * r.duration):
            pairs[(i, j)] = d_on + d_off
    return _assign(pairs)


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
    pairs = {}
    for i, j in _overlapping(reference, estimated, 0.0, 0.0, by_end=True):
        r, e = reference[i], estimated[j]
        iou = box_iou(r, e) if _label(r, ignore_labels) == _label(e, ignore_labels) else 0.0
        if iou >= min_iou:
            pairs[(i, j)] = -iou  # the most total IoU among the pairs that qualify
    tp = len(_assign(pairs))
    return {**_prf(tp, len(estimated) - tp, len(reference) - tp), "matched_by": f"box IoU >= {min_iou:g}"}


def false_alarms_per_minute(reference: list[Event], estimated: list[Event], duration: float,
                            collar: float = 0.05, ignore_labels: bool = False) -> float:
    """Estimated events that match no reference event (onset/offset rule), per minute of audio; on a
    recording without the target (empty reference) every event is a false alarm."""
    matched = len(match_events(reference, estimated, collar, ignore_labels=ignore_labels))
    return round((len(estimated) - matched) / max(duration / 60, 1e-9), 2)


def _activity(events: list[Event], label: str, step: float, n: int, ignore_labels: bool) -> list[tuple[int, int]]:
    """The frames (of ``step`` s, ``n`` in all) where ``label`` is active, as merged [first, stop) runs: an
    event of 1e9 s costs one run, not a billion frames."""
    runs = sorted((max(0, int(math.floor(e.begin / step))), min(n, int(math.ceil(e.end / step))))
                  for e in events if _label(e, ignore_labels) == label)
    merged: list[list[int]] = []
    for a, b in runs:
        if b <= a:
            continue
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return [(a, b) for a, b in merged]


def _overlap(x: list[tuple[int, int]], y: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The runs two sorted lists of disjoint runs share."""
    out, i, j = [], 0, 0
    while i < len(x) and j < len(y):
        a, b = max(x[i][0], y[j][0]), min(x[i][1], y[j][1])
        if a < b:
            out.append((a, b))
        if x[i][1] < y[j][1]:
            i += 1
        else:
            j += 1
    return out


def _frames(runs: list[tuple[int, int]]) -> int:
    return sum(b - a for a, b in runs)


def _activities(reference: list[Event], estimated: list[Event], step: float, n: int, ignore_labels: bool):  # noqa: ANN202
    labels = sorted({_label(e, ignore_labels) for e in reference + estimated})
    for label in labels:
        ref, est = (_activity(events, label, step, n, ignore_labels) for events in (reference, estimated))
        yield ref, est, _overlap(ref, est)


def frame_scores(reference: list[Event], estimated: list[Event], duration: float, frame: float = 0.01,
                 ignore_labels: bool = False) -> dict[str, float | int]:
    n = int(math.ceil(duration / frame))
    tp = fp = fn = 0
    for ref, est, both in _activities(reference, estimated, frame, n, ignore_labels):
        tp, fp, fn = tp + _frames(both), fp + _frames(est) - _frames(both), fn + _frames(ref) - _frames(both)
    return _prf(tp, fp, fn)


def segment_error_rate(reference: list[Event], estimated: list[Event], duration: float, segment: float = 1.0,
                       ignore_labels: bool = False) -> dict[str, float | int]:
    n = max(1, int(math.ceil(duration / segment)))
    changes: dict[int, list[int]] = {}  # segment -> [change of missed labels, change of extra labels] from there
    total = 0
    for ref, est, both in _activities(reference, estimated, segment, n, ignore_labels):
        total += _frames(ref)
        for kind, runs, shared in ((0, ref, both), (1, est, both)):
            for a, b in runs:
                changes.setdefault(a, [0, 0])[kind] += 1
                changes.setdefault(b, [0, 0])[kind] -= 1
            for a, b in shared:  # active in both: neither missed nor extra
                changes.setdefault(a, [0, 0])[kind] -= 1
                changes.setdefault(b, [0, 0])[kind] += 1
    subs = dels = ins = 0
    fn = fp = 0
    points = sorted(changes)
    for here, there in zip(points, points[1:], strict=False):  # fn, fp constant on [here, there)
        fn, fp = fn + changes[here][0], fp + changes[here][1]
        length = there - here
        subs, dels, ins = subs + min(fn, fp) * length, dels + max(0, fn - fp) * length, ins + max(0, fp - fn) * length
    er = (subs + dels + ins) / total if total else float(ins > 0)
    return {"error_rate": round(float(er), 4), "substitutions": int(subs), "deletions": int(dels),
            "insertions": int(ins), "reference_active": int(total)}


def sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB over the samples both signals have."""
    n = min(len(reference), len(estimate))
    r, e = reference[:n].astype(np.float64), estimate[:n].astype(np.float64)
    noise = float(((r - e) ** 2).sum())
    return float("inf") if noise == 0 else round(10 * math.log10(float((r**2).sum()) / noise), 4)
