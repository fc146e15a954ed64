"""Mask columns -> events, streamed: the spectrogram's class mask and probabilities arrive block by block
from the engine, and events are cut where the mask is empty long enough, holding only the open columns.

A model with an instance head gives one event per centre-heatmap peak (``instances_to_events``): the box its
edge distances give, labelled by the class mask inside it; only the granularities call and song join them.
A time-only model with the head cuts the mask's segments between the peaks (``split_segments``)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from unetseg.audio.annotations import Event
from unetseg.audio.masks import (
    RegionBox,
    active_runs,
    column_labels,
    column_probabilities,
    columns_to_events,
    join_boxes,
    majority_label,
    mask_to_events,
)
from unetseg.audio.settings import EventOptions
from unetseg.audio.spectrogram import SpectrogramMapping
from unetseg.instances.centres import Box, box_class, box_pixels, decode_centres, nested, suppress_nested

DECODINGS = ("segments", "instances", "columns", "regions")


def decoding(head: bool, time_only: bool, granularity: str = "syllable") -> str:
    """How a model's maps become events, chosen here only (the tracker, detect's record and the tuning):
    ``segments`` (time-only with the instance head, syllables: the mask's segments split between the head's
    peaks), ``instances`` (boxes from the head's peaks), ``columns`` (time-only: probabilities pooled over
    frequency and cut in time; the head's peaks are not used at granularities call and song) or ``regions``
    (connected time-frequency regions of the class mask)."""
    if head and time_only:
        return "segments" if granularity == "syllable" else "columns"
    if head:
        return "instances"
    return "columns" if time_only else "regions"


@dataclass
class EventTracker:
    """Turns finished mask columns into events, holding only the columns of events still open.

    Regions (time + frequency boxes) by default; with ``columns`` (models trained from time-only
    annotations) probabilities are pooled over frequency per column and cut into segments in time, with
    ``threshold`` on the pooled foreground probability. Where ``push`` is given the instance head's maps,
    events are its instances: boxes (``instances_to_events``), or with ``columns`` the segments split
    between the instances' peaks (``split_segments``; granularities call and song join segments as without
    the head).
    """

    mapping: SpectrogramMapping
    class_names: list[str]
    options: EventOptions = field(default_factory=EventOptions)  # resolved in __post_init__
    columns: bool = False
    threshold: float = 0.5
    events: list[Event] = field(default_factory=list)
    _mask: np.ndarray | None = None
    _probs: np.ndarray | None = None
    _start: int = 0  # recording column of the first pending column
    _head: np.ndarray | None = None  # (5, rows, k): heat and edge distances of the pending columns
    _recent: list[Box] = field(default_factory=list)  # instances reaching past the last cut (recording columns)

    def __post_init__(self) -> None:
        self.options = self.options.resolved()

    @property
    def pending(self) -> tuple[int, int]:
        """Columns held for events still open: of the mask, and of the instance head's maps (0 without)."""
        return (0 if self._mask is None else self._mask.shape[-1], 0 if self._head is None else self._head.shape[-1])

    def push(self, mask: np.ndarray, probs: np.ndarray, head: np.ndarray | None = None) -> None:
        """``mask``: class indices (rows, k); ``probs``: (rows, k) for binary models, else (classes, rows, k);
        ``head``: the instance head's (5, rows, k) heat and edge distances, if the model has one."""
        positive = np.asarray(self.mapping.row_hz) >= 0
        if head is not None:
            self._head = head if self._head is None else np.concatenate([self._head, head], axis=-1)
        if self.columns:
            probs = column_probabilities(probs, positive)
            mask = column_labels(probs, self.threshold)[None]
            positive = np.ones(1, bool)
        if self._mask is None:
            self._mask, self._probs = mask, probs
        else:
            self._mask = np.concatenate([self._mask, mask], axis=1)
            self._probs = np.concatenate([self._probs, probs], axis=-1)
        gap = max(1, self.mapping.columns(self.options.merge_gap)) + 1
        empty = ~(self._mask[positive] > 0).any(axis=0)
        cut = _last_gap_end(empty, gap)
        limit = int(self.options.max_event_seconds / self.mapping.column_seconds)
        if cut is None and self._mask.shape[1] > limit:
            cut = self._mask.shape[1]
        if cut:
            self._flush(cut)

    def _flush(self, cut: int) -> None:
        assert self._mask is not None and self._probs is not None
        o = self.options
        head = self._head
        mode = decoding(head is not None, self.columns, o.granularity)
        if mode == "segments":
            self.events += split_segments(head[0, :, :cut], self._mask[0, :cut], self._probs[:, :cut], self.mapping,
                                          self.class_names, o, self._start)
        elif mode == "instances":  # the pending mask is the class mask (rows, k)
            self.events += instances_to_events(head, self._mask, self.mapping, self.class_names, o, cut, self._start,
                                               self._recent)
        elif mode == "columns":
            self.events += columns_to_events(self._mask[0, :cut], self._probs[:, :cut], self.mapping,
                                             self.class_names, o.min_duration, o.merge_gap, column_offset=self._start)
        else:
            self.events += mask_to_events(self._mask[:, :cut], self.mapping, self.class_names,
                                          self._probs[..., :cut], o, column_offset=self._start)
        self._mask, self._probs = self._mask[:, cut:], self._probs[..., cut:]
        if head is not None:  # whatever decoded this segment, the head's columns go with it
            self._head = head[..., cut:]
        self._start += cut

    def finish(self) -> list[Event]:
        if self._mask is not None and self._mask.shape[1]:
            self._flush(self._mask.shape[1])
        return sorted(self.events, key=lambda e: (e.begin, e.label))


def instances_to_events(head: np.ndarray, mask: np.ndarray, mapping: SpectrogramMapping, class_names: list[str],
                        options: EventOptions, cut: int, column_offset: int = 0,
                        recent: list[Box] | None = None) -> list[Event]:
    """Events of the instance head's peaks in columns ``[0, cut)`` of ``head`` (5, rows, k) and the class
    ``mask`` (rows, k): one per peak above ``options.peak_threshold`` on the positive rows (the column after
    ``cut``, where given, decides peaks at the edge), the box its edge distances give, labelled by the most
    frequent foreground class inside it (scored by the peak); a box mostly inside a stronger one of its class
    is dropped (``instances.suppress_nested``). ``recent`` holds boxes of earlier segments that reach past this
    one's start (recording columns): a new box overlapping one of them by IoU > 0.5, or nested in it, is
    dropped (and ``recent`` is updated in place). Granularity call or song joins instances of a class whose bands
    overlap and that lie within ``merge_gap``; syllable keeps every instance."""
    o = options.resolved()
    kept = head_boxes(head, mask, mapping, len(class_names), o.peak_threshold, cut, column_offset, recent)
    return box_events(kept, mapping, class_names, o)


def head_boxes(head: np.ndarray, mask: np.ndarray, mapping: SpectrogramMapping, n_classes: int,
                   peak_threshold: float, cut: int, column_offset: int = 0, recent: list[Box] | None = None
                   ) -> list[tuple[Box, int]]:
    """The boxes of ``instances_to_events`` with their classes, before they become events: they depend on the
    peak threshold only, so detect's tuning decodes them once per threshold for every granularity."""
    hz = np.asarray(mapping.row_hz)
    positive = np.nonzero(hz >= 0)[0]
    top, bottom = int(positive.min()), int(positive.max()) + 1  # the positive rows are contiguous
    span = min(cut + 1, head.shape[-1])
    boxes = decode_centres(head[0, top:bottom, :span], head[1:, top:bottom, :span], peak_threshold,
                           peak_columns=cut)
    previous = recent if recent is not None else []
    kept: list[tuple[Box, int]] = []
    for b in boxes:
        placed = Box(b.x0 + column_offset, b.y0 + top, b.x1 + column_offset, b.y1 + top, b.score)
        if any(placed.iou(r) > 0.5 or nested(placed, r) for r in previous):
            continue
        kept.append((placed, box_class(mask[top:bottom], b, n_classes) or 1))
    kept = suppress_nested(kept)
    if recent is not None:
        start = column_offset + cut
        recent[:] = [r for r in previous if r.x1 > start] + [b for b, _ in kept if b.x1 > start]
    return kept


def split_segments(heat: np.ndarray, labels: np.ndarray, pooled: np.ndarray, mapping: SpectrogramMapping,
                   class_names: list[str], options: EventOptions, column_offset: int = 0) -> list[Event]:
    """Time-only events from the class mask's segments and the instance head's peaks, a seeded watershed in
    one dimension: each run of active columns (``labels`` > 0, runs closer than ``merge_gap`` joined) holding
    k >= 2 peaks of ``heat`` (rows, k; its highest value per column, a peak higher than the column before it
    and at least the one after) above ``peak_threshold`` is cut into k events at the least foreground
    column between neighbouring peaks, so the mask gives the onsets and offsets and the head where one
    syllable ends and the next begins; a run without a peak stays one event. Each event is labelled by the
    majority of its columns and scored by the highest heat in it; events shorter than ``min_duration`` are
    dropped."""
    o = options.resolved()
    column_heat = heat[np.asarray(mapping.row_hz) >= 0].max(axis=0)  # each column's highest heat
    left = np.concatenate([[-np.inf], column_heat[:-1]])
    right = np.concatenate([column_heat[1:], [-np.inf]])
    peaks = np.nonzero((column_heat > left) & (column_heat >= right) & (column_heat > o.peak_threshold))[0].tolist()
    foreground = pooled[0] if pooled.shape[0] == 1 else 1.0 - pooled[0]
    events = []
    for a, b in active_runs(labels, mapping.columns(o.merge_gap)):
        inside = [x for x in peaks if a <= x < b]
        cuts = [a] + [x + int(np.argmin(foreground[x:y])) for x, y in itertools.pairwise(inside)] + [b]
        for lo, hi in itertools.pairwise(cuts):
            begin, end = mapping.span(column_offset + lo, column_offset + hi)
            if hi <= lo or end - begin < o.min_duration:
                continue
            label = majority_label(labels[lo:hi], class_names)
            events.append(Event(round(float(begin), 6), round(float(end), 6), None, None, label,
                                round(float(column_heat[lo:hi].max()), 4)))
    return events


def box_events(boxes: list[tuple[Box, int]], mapping: SpectrogramMapping, class_names: list[str],
               o: EventOptions) -> list[Event]:
    """Instance boxes (recording columns and rows) with their class -> events, joined by granularity (call and
    song; syllable keeps each), those shorter than ``min_duration`` or narrower than ``min_bandwidth`` dropped."""
    hz = np.asarray(mapping.row_hz)
    step = np.abs(np.diff(hz)).min() if len(hz) > 1 else 0.0
    events = []
    for c in sorted({c for _, c in boxes}):
        own = []
        for b, k in boxes:
            if k == c:
                rows, cols = box_pixels(b)
                own.append(RegionBox(cols.start, cols.stop, rows.start, rows.stop, 1, b.score))
        if o.granularity != "syllable":
            gap = mapping.columns(o.merge_gap)
            tolerance = int(round(o.freq_tolerance / step)) if step else 0
            own = join_boxes(own, gap, tolerance)
        for b in own:
            begin, end = mapping.span(b.x0, b.x1)
            low, high = hz[min(b.y1, len(hz)) - 1] - step / 2, hz[b.y0] + step / 2
            if end - begin < o.min_duration or high - low < o.min_bandwidth:
                continue
            events.append(Event(round(float(begin), 6), round(float(end), 6), round(float(max(low, 0.0)), 3),
                                round(float(high), 3), class_names[c], round(b.score / b.pixels, 4)))
    return sorted(events, key=lambda e: (e.begin, e.label))


def _last_gap_end(empty: np.ndarray, gap: int) -> int | None:
    """Index just after the last run of >= ``gap`` empty columns that ends before the last column."""
    if len(empty) < gap:
        return None
    runs = np.convolve(empty.astype(np.int32), np.ones(gap, np.int32), mode="valid") == gap
    hits = np.nonzero(runs)[0]
    if not hits.size:
        return None
    return int(hits[-1]) + gap
