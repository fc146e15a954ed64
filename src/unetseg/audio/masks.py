"""Events <-> masks on a spectrogram image, as pure functions of its pixel mapping.

Column j stands for the time ``mapping.column_time(j)`` (the centre of its STFT frame) and spans one hop;
row i for the frequency ``mapping.row_hz[i]``. A two-sided spectrum shows each band twice (positive and
negative frequencies): boxes are painted in both halves and events are read from the positive half.
"""

from __future__ import annotations

import cv2
import numpy as np

from .annotations import Event
from .spectrogram import SpectrogramMapping


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


def close_time_gaps(active: np.ndarray, gap_columns: int) -> np.ndarray:
    """Join runs of active columns separated by at most ``gap_columns`` empty ones, per row."""
    if gap_columns <= 0:
        return active
    kernel = np.ones((1, gap_columns + 1), np.uint8)
    padded = np.pad(active.astype(np.uint8), ((0, 0), (gap_columns + 1, gap_columns + 1)))
    closed = cv2.morphologyEx(padded, cv2.MORPH_CLOSE, kernel)
    return closed[:, gap_columns + 1:-gap_columns - 1].astype(bool)


def mask_to_events(mask: np.ndarray, mapping: SpectrogramMapping, class_names: list[str],
                   probabilities: np.ndarray | None = None, min_duration: float = 0.0, min_bandwidth: float = 0.0,
                   merge_gap: float = 0.0, column_offset: int = 0) -> list[Event]:
    """Connected regions of each class -> events with time span, band, label and mean probability.

    ``mask``: class indices (0 = background) for rows x columns; ``probabilities``: (classes, rows, columns)
    where class 0 is background, or (rows, columns) for a binary model. ``column_offset`` places the
    mask's first column in the recording. ``merge_gap`` (s) joins regions of a class closer in time.
    """
    hz = np.asarray(mapping.row_hz)
    positive = hz >= 0
    step = np.abs(np.diff(hz)).min() if len(hz) > 1 else 0.0
    gap = int(round(merge_gap / mapping.column_seconds))
    half = mapping.column_seconds / 2
    events = []
    for c in range(1, len(class_names)):
        active = (mask == c) & positive[:, None]
        if not active.any():
            continue
        joined = close_time_gaps(active, gap)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(joined.astype(np.uint8), connectivity=8)
        scores = np.ones(n)
        if probabilities is not None:  # mean probability over each region's own (not gap-filled) pixels
            p = probabilities if probabilities.ndim == 2 else probabilities[c]
            own = labels[active]
            scores = np.bincount(own, weights=p[active], minlength=n) / np.maximum(np.bincount(own, minlength=n), 1)
        for k in range(1, n):
            x, y, w, h = (int(v) for v in stats[k, :4])
            begin = mapping.column_time(column_offset + x) - half
            end = mapping.column_time(column_offset + x + w - 1) + half
            low, high = hz[y + h - 1] - step / 2, hz[y] + step / 2
            if end - begin < min_duration or high - low < min_bandwidth:
                continue
            score = float(scores[k])
            events.append(Event(round(float(begin), 6), round(float(end), 6), round(float(max(low, 0.0)), 3),
                                round(float(high), 3), class_names[c], round(score, 4)))
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


def columns_to_events(labels: np.ndarray, pooled: np.ndarray, mapping: SpectrogramMapping, class_names: list[str],
                      min_duration: float = 0.0, merge_gap: float = 0.0, column_offset: int = 0) -> list[Event]:
    """Time-only decoding (as vak does): runs of active columns -> segments; runs closer than ``merge_gap``
    (s) are joined, segments shorter than ``min_duration`` dropped, and each segment is labelled by the
    majority of its columns. One event per segment, without a band; score = mean pooled foreground over
    the segment's own columns."""
    active = labels > 0
    gap = int(round(merge_gap / mapping.column_seconds))
    if gap:
        active = close_time_gaps(active[None], gap)[0]
    edges = np.diff(np.concatenate([[0], active.astype(np.int8), [0]]))
    starts, stops = np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0]
    half = mapping.column_seconds / 2
    foreground = pooled[0] if pooled.shape[0] == 1 else 1.0 - pooled[0]
    events = []
    for a, b in zip(starts, stops, strict=True):
        begin = mapping.column_time(column_offset + a) - half
        end = mapping.column_time(column_offset + b - 1) + half
        if end - begin < min_duration:
            continue
        votes = np.bincount(labels[a:b], minlength=len(class_names))[1:]
        label = class_names[int(votes.argmax()) + 1] if votes.any() else class_names[1]
        own = labels[a:b] > 0  # the segment's own columns, not the joined gaps
        events.append(Event(round(float(begin), 6), round(float(end), 6), None, None, label,
                            round(float(foreground[a:b][own].mean()), 4)))
    return events
