"""Events <-> masks on a spectrogram image, as pure functions of its pixel mapping.

Column j stands for the time ``mapping.column_time(j)`` (the centre of its STFT frame) and spans one hop;
row i for the frequency ``mapping.row_hz[i]``. A two-sided spectrum shows each band twice (positive and
negative frequencies): boxes are painted in both halves and events are read from the positive half.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from unetseg.audio.annotations import Event
from unetseg.audio.settings import RAW_REGIONS, EventOptions
from unetseg.audio.spectrogram import SpectrogramMapping
from unetseg.instances.centres import Box, paint_boxes


def class_index(label: str, classes: list[str] | None) -> int | None:
    """Class of a label: 1 when all labels merge into one class, else its position in ``classes`` (+1),
    or None for a label that is not listed (skipped)."""
    if classes is None:
        return 1
    return classes.index(label) + 1 if label in classes else None


def event_columns(e: Event, mapping: SpectrogramMapping, n_cols: int) -> slice:
    times = mapping.column_time(np.arange(n_cols))
    inside = np.nonzero((times >= e.begin) & (times <= e.end))[0]
    return slice(int(inside[0]), int(inside[-1]) + 1) if inside.size else slice(0, 0)


def event_rows(e: Event, mapping: SpectrogramMapping) -> np.ndarray:
    hz = np.abs(np.asarray(mapping.row_hz))
    low = -np.inf if e.low is None else e.low
    high = np.inf if e.high is None else e.high
    return (hz >= low) & (hz <= high)


def events_to_mask(events: list[Event], mapping: SpectrogramMapping, shape: tuple[int, int],
                   classes: list[str] | None = None, image: np.ndarray | None = None) -> np.ndarray:
    """uint8 class mask: boxes for events with a band, time bands (all rows) for time-only events.

    With ``image``, only the energetic pixels of each box are kept (Otsu's threshold within the box), so
    the mask follows the call's shape. Overlapping events: later ones paint over earlier ones.
    """
    mask = np.zeros(shape, np.uint8)
    for e in events:
        c = class_index(e.label, classes)
        if c is None:
            continue
        cols = event_columns(e, mapping, shape[1])
        if cols.stop <= cols.start:
            continue
        rows = event_rows(e, mapping)
        box = np.zeros(shape, bool)
        box[rows, cols] = True
        if image is not None and box.any():
            values = image[box]
            if values.max() > values.min():
                threshold, _ = cv2.threshold(values.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
                box &= image > threshold
        mask[box] = c
    return mask


def energetic_band(image: np.ndarray, cols: slice, rows: np.ndarray, background: np.ndarray | None = None
                   ) -> tuple[int, int] | None:
    """The band (first row, row after the last) of a time-only event, as a person would draw its box: the
    rows (among ``rows``) whose mean level over the event's columns, less the row's ``background`` level (its
    median over the recording: steady hum is no call), is above Otsu's threshold of those row levels, from
    the highest to the lowest such row (harmonics included). None where the rows are all alike."""
    index = np.nonzero(rows)[0]
    means = image[index, cols].astype(np.float32).mean(axis=1)
    if background is not None:
        means = means - background[index]
    if not index.size or means.max() <= means.min():
        return None
    scaled = np.round(255 * (means - means.min()) / (means.max() - means.min())).astype(np.uint8)
    threshold, _ = cv2.threshold(scaled.reshape(-1, 1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    loud = index[scaled > threshold]
    return (int(loud.min()), int(loud.max()) + 1) if loud.size else None


def events_to_instances(events: list[Event], mapping: SpectrogramMapping, shape: tuple[int, int],
                        classes: list[str] | None = None, image: np.ndarray | None = None) -> np.ndarray:
    """An instance-ID mask (uint16; 0 = none, k = the k-th event kept) of the events' boxes on the positive
    rows: each event with a band is its box; a time-only event takes the band of ``energetic_band`` on
    ``image`` (all positive rows without an image or where the image is flat)."""
    positive = np.asarray(mapping.row_hz) >= 0
    background = np.median(image, axis=1).astype(np.float32) if image is not None else None
    boxes = []
    for e in events:
        if class_index(e.label, classes) is None:
            continue
        cols = event_columns(e, mapping, shape[1])
        if cols.stop <= cols.start:
            continue
        rows = event_rows(e, mapping) & positive
        if e.low is None and e.high is None and image is not None:
            band = energetic_band(image, cols, rows, background)
            if band is not None:
                rows = np.zeros_like(rows)
                rows[band[0]:band[1]] = True
        found = np.nonzero(rows)[0]
        if found.size:
            boxes.append(Box(cols.start, int(found.min()), cols.stop, int(found.max()) + 1))
    return paint_boxes(boxes, shape)


def close_time_gaps(active: np.ndarray, gap_columns: int) -> np.ndarray:
    """Join runs of active columns separated by at most ``gap_columns`` empty ones, per row."""
    if gap_columns <= 0:
        return active
    n = active.shape[1]
    index = np.arange(n)
    left = np.maximum.accumulate(np.where(active, index, -1), axis=1)  # last active column at or before
    right = np.minimum.accumulate(np.where(active, index, n)[:, ::-1], axis=1)[:, ::-1]  # next at or after
    return active | ((left >= 0) & (right < n) & (right - left - 1 <= gap_columns))


@dataclass
class RegionBox:
    """A region or a group of joined regions: columns [x0, x1), rows [y0, y1), pixels, probability sum."""

    x0: int
    x1: int
    y0: int
    y1: int
    pixels: int
    score: float

    def join(self, other: RegionBox) -> None:
        self.x0, self.x1 = min(self.x0, other.x0), max(self.x1, other.x1)
        self.y0, self.y1 = min(self.y0, other.y0), max(self.y1, other.y1)
        self.pixels += other.pixels
        self.score += other.score


def _touch(a: RegionBox, b: RegionBox, rows: int, simultaneous: float) -> bool:
    if a.y0 <= b.y1 + rows and b.y0 <= a.y1 + rows:
        return True
    overlap = min(a.x1, b.x1) - max(a.x0, b.x0)
    return simultaneous > 0 and overlap >= simultaneous * max(a.x1 - a.x0, b.x1 - b.x0)


def join_boxes(boxes: list[RegionBox], gap: int, rows: int, simultaneous: float = 0.0) -> list[RegionBox]:
    """Join boxes that overlap in rows (within ``rows``) and lie at most ``gap`` columns apart, or that
    overlap in time by ``simultaneous`` of the longer one whatever their rows (harmonics of one call),
    transitively: one sweep in order of start column, each box merging every open group it touches."""
    done: list[RegionBox] = []
    open_: list[RegionBox] = []
    for box in sorted(boxes, key=lambda b: b.x0):
        still = []
        for g in open_:
            (done if g.x1 + gap < box.x0 else still).append(g)
        touching = [g for g in still if _touch(box, g, rows, simultaneous)]
        for g in touching:
            box.join(g)
        open_ = [g for g in still if all(g is not t for t in touching)] + [box]
    return done + open_


def mask_to_events(mask: np.ndarray, mapping: SpectrogramMapping, class_names: list[str],
                   probabilities: np.ndarray | None = None, options: EventOptions = RAW_REGIONS,
                   column_offset: int = 0) -> list[Event]:
    """Connected regions of each class -> events a person would mark, by ``options`` (resolved; the default
    keeps every region as it is): regions of fewer than ``min_pixels`` pixels (specks) and clicks (shorter
    than ``click_seconds`` and spanning more than ``click_band`` of the positive rows) are dropped; regions of
    a class whose bands overlap (within ``freq_tolerance`` Hz) and that lie closer than ``merge_gap`` s are
    joined into one event, as are regions overlapping in time by ``simultaneous`` of the longer one whatever
    their bands (harmonics); events shorter than ``min_duration`` or narrower than ``min_bandwidth`` are
    dropped. Each event has a time span, a band, a label and the mean probability of its own pixels.

    ``mask``: class indices (0 = background) for rows x columns; ``probabilities``: (classes, rows, columns)
    where class 0 is background, or (rows, columns) for a binary model. ``column_offset`` places the
    mask's first column in the recording.
    """
    o = options.resolved()
    min_duration, min_bandwidth, min_pixels, click_band = o.min_duration, o.min_bandwidth, o.min_pixels, o.click_band
    hz = np.asarray(mapping.row_hz)
    positive = hz >= 0
    step = np.abs(np.diff(hz)).min() if len(hz) > 1 else 0.0
    gap = mapping.columns(o.merge_gap)
    tolerance_rows = int(round(o.freq_tolerance / step)) if step else 0
    click_columns = o.click_seconds / mapping.column_seconds
    band_rows = int(positive.sum())
    events = []
    for c in range(1, len(class_names)):
        active = (mask == c) & positive[:, None]
        if not active.any():
            continue
        n, labels, stats, _ = cv2.connectedComponentsWithStats(active.astype(np.uint8), connectivity=8)
        own = labels[active]
        pixels = np.bincount(own, minlength=n)
        if probabilities is not None:
            p = probabilities if probabilities.ndim == 2 else probabilities[c]
            sums = np.bincount(own, weights=p[active], minlength=n)
        else:
            sums = pixels.astype(np.float64)
        boxes = []
        for k in range(1, n):
            x, y, w, h = (int(v) for v in stats[k, :4])
            if pixels[k] < min_pixels or (w < click_columns and h > click_band * band_rows):
                continue
            boxes.append(RegionBox(x, x + w, y, y + h, int(pixels[k]), float(sums[k])))
        for b in join_boxes(boxes, gap, tolerance_rows, o.simultaneous):
            begin, end = mapping.span(column_offset + b.x0, column_offset + b.x1)
            low, high = hz[b.y1 - 1] - step / 2, hz[b.y0] + step / 2
            if end - begin < min_duration or high - low < min_bandwidth:
                continue
            events.append(Event(round(float(begin), 6), round(float(end), 6), round(float(max(low, 0.0)), 3),
                                round(float(high), 3), class_names[c], round(b.score / max(b.pixels, 1), 4)))
    return sorted(events, key=lambda e: (e.begin, e.label))


def column_probabilities(probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Probabilities pooled over frequency per column: (rows, k) for a binary model -> (1, k) foreground;
    (classes, rows, k) -> (classes, k). ``rows`` selects the rows pooled (the positive half)."""
    if probs.ndim == 2:
        return probs[rows].mean(axis=0, keepdims=True)
    return probs[:, rows].mean(axis=1)


def column_labels(pooled: np.ndarray, threshold: float) -> np.ndarray:
    """Per column: 0 where the pooled foreground probability is at most ``threshold``, else the most
    probable foreground class (1..)."""
    if pooled.shape[0] == 1:
        return (pooled[0] > threshold).astype(np.uint8)
    foreground = 1.0 - pooled[0]
    return np.where(foreground > threshold, pooled[1:].argmax(0) + 1, 0).astype(np.uint8)


def active_runs(labels: np.ndarray, gap: int = 0) -> list[tuple[int, int]]:
    """``[start, stop)`` of each run of active columns (``labels`` > 0), runs at most ``gap`` columns apart
    joined."""
    active = labels > 0
    if gap:
        active = close_time_gaps(active[None], gap)[0]
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    return list(zip(np.nonzero(edges == 1)[0].tolist(), np.nonzero(edges == -1)[0].tolist(), strict=True))


def majority_label(labels: np.ndarray, class_names: list[str]) -> str:
    """The class most of ``labels``' active columns hold (the first class when none is active)."""
    votes = np.bincount(labels, minlength=len(class_names))[1:]
    return class_names[int(votes.argmax()) + 1] if votes.any() else class_names[1]


def columns_to_events(labels: np.ndarray, pooled: np.ndarray, mapping: SpectrogramMapping, class_names: list[str],
                      min_duration: float = 0.0, merge_gap: float = 0.0, column_offset: int = 0) -> list[Event]:
    """Time-only decoding (as vak does): runs of active columns -> segments; runs closer than ``merge_gap``
    (s) are joined, segments shorter than ``min_duration`` dropped, and each segment is labelled by the
    majority of its columns. One event per segment, without a band; score = mean pooled foreground over
    the segment's own columns."""
    foreground = pooled[0] if pooled.shape[0] == 1 else 1.0 - pooled[0]
    events = []
    for a, b in active_runs(labels, mapping.columns(merge_gap)):
        begin, end = mapping.span(column_offset + a, column_offset + b)
        if end - begin < min_duration:
            continue
        label = majority_label(labels[a:b], class_names)
        own = labels[a:b] > 0  # the segment's own columns, not the joined gaps
        events.append(Event(round(float(begin), 6), round(float(end), 6), None, None, label,
                            round(float(foreground[a:b][own].mean()), 4)))
    return events
