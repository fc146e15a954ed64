"""Mask columns -> events, streamed: the spectrogram's class mask and probabilities arrive block by block
from the engine, and events are cut where the mask is empty long enough, holding only the open columns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .annotations import Event
from .masks import column_labels, column_probabilities, columns_to_events, mask_to_events
from .options import EventOptions
from .spectrogram import SpectrogramMapping


@dataclass
class EventTracker:
    """Turns finished mask columns into events, holding only the columns of events still open.

    Regions (time + frequency boxes) by default; with ``columns`` (models trained from time-only
    annotations) probabilities are pooled over frequency per column and cut into segments in time, with
    ``threshold`` on the pooled foreground probability.
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

    def __post_init__(self) -> None:
        self.options = self.options.resolved()

    def push(self, mask: np.ndarray, probs: np.ndarray) -> None:
        """``mask``: class indices (rows, k); ``probs``: (rows, k) for binary models, else (classes, rows, k)."""
        positive = np.asarray(self.mapping.row_hz) >= 0
        if self.columns:
            probs = column_probabilities(probs, positive)
            mask = column_labels(probs, self.threshold)[None]
            positive = np.ones(1, bool)
        if self._mask is None:
            self._mask, self._probs = mask, probs
        else:
            self._mask = np.concatenate([self._mask, mask], axis=1)
            self._probs = np.concatenate([self._probs, probs], axis=-1)
        gap = max(1, int(round(self.options.merge_gap / self.mapping.column_seconds))) + 1
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
        if self.columns:
            self.events += columns_to_events(self._mask[0, :cut], self._probs[:, :cut], self.mapping,
                                             self.class_names, o.min_duration, o.merge_gap, column_offset=self._start)
        else:
            self.events += mask_to_events(self._mask[:, :cut], self.mapping, self.class_names,
                                          self._probs[..., :cut], o, column_offset=self._start)
        self._mask, self._probs = self._mask[:, cut:], self._probs[..., cut:]
        self._start += cut

    def finish(self) -> list[Event]:
        if self._mask is not None and self._mask.shape[1]:
            self._flush(self._mask.shape[1])
        return sorted(self.events, key=lambda e: (e.begin, e.label))


def _last_gap_end(empty: np.ndarray, gap: int) -> int | None:
    """Index just after the last run of >= ``gap`` empty columns that ends before the last column."""
    if len(empty) < gap:
        return None
    runs = np.convolve(empty.astype(np.int32), np.ones(gap, np.int32), mode="valid") == gap
    hits = np.nonzero(runs)[0]
    if not hits.size:
        return None
    return int(hits[-1]) + gap
