"""Tests of ``unetseg.audio.masks``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import column_mapping
from unetseg.audio.annotations import Event, read_annotations
from unetseg.audio.masks import events_to_mask, mask_to_events
from unetseg.audio.recordings import load_audio
from unetseg.audio.spectrogram import SpectrogramMapping, preset, spectrogram_image


def test_boxes_time_bands_energy_and_back_to_events(birds: Path) -> None:
    y, sr = load_audio(birds / "spinetail" / "spinetail.wav", 22050)
    image, mapping = spectrogram_image(y, sr, preset("default"))
    events = read_annotations(birds / "spinetail" / "spinetail.txt")
    boxes = events_to_mask(events, mapping, image.shape, classes=["SP", "CRER"])
    energetic = events_to_mask(events, mapping, image.shape, classes=["SP", "CRER"], image=image)
    assert 0 < (energetic > 0).sum() < (boxes > 0).sum() and ((energetic > 0) <= (boxes > 0)).all()
    band = events_to_mask([Event(1.0, 1.5)], mapping, image.shape)  # time-only: every row
    cols = np.nonzero(band.any(axis=0))[0]
    assert band[:, cols].all() and len(cols) == pytest.approx(0.5 / mapping.column_seconds, abs=2)
    first = events_to_mask(events[:1], mapping, image.shape, classes=["SP", "CRER"])
    (back,) = mask_to_events(first, mapping, ["background", "SP", "CRER"])
    assert back.label == "SP"
    assert abs(back.begin - events[0].begin) <= mapping.column_seconds
    assert abs(back.end - events[0].end) <= mapping.column_seconds
    assert abs(back.low - events[0].low) <= sr / 512  # one row


def test_columns_to_events_join_gaps_drop_specks_and_vote() -> None:
    from unetseg.audio.masks import columns_to_events

    labels = np.array([0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 2, 2, 2, 1, 2, 0, 0, 0, 0, 1, 0], np.uint8)
    pooled = np.zeros((3, len(labels)))
    pooled[0] = np.where(labels > 0, 0.2, 0.9)
    names = ["background", "a", "b"]
    events = columns_to_events(labels, pooled, column_mapping(), names, min_duration=0.02, merge_gap=0.02)
    assert [(round(e.begin, 3), round(e.end, 3), e.label) for e in events] == [(0.02, 0.09, "a"), (0.14, 0.19, "b")]
    assert all(e.low is None and e.high is None and e.score == pytest.approx(0.8) for e in events)
    apart = columns_to_events(labels, pooled, column_mapping(), names, merge_gap=0.0)
    assert len(apart) == 4  # without a merge gap the split syllable is two, and the speck stays


def _events_of(mask: np.ndarray, **options: object) -> list[Event]:
    from unetseg.audio.events import EventTracker
    from unetseg.audio.settings import EventOptions

    mapping = SpectrogramMapping(1000, 0, 10, 10, [float(100 * r) for r in range(63, -1, -1)], {})  # 10 ms, 100 Hz
    tracker = EventTracker(mapping, ["background", "a", "b"], EventOptions(**options))
    tracker.push(mask, np.where(mask > 0, 0.9, 0.05)[None].repeat(3, 0))
    return tracker.finish()


def test_events_drop_clicks_and_specks_and_join_split_calls() -> None:
    mask = np.zeros((64, 120), np.uint8)
    mask[20:30, 10:20] = 1  # a call ...
    mask[22:28, 23:33] = 1  # ... split by a 3-column (30 ms) gap: one event
    mask[2:62, 50] = 1  # a broadband click, one column wide: dropped
    mask[5, 60:62] = 1  # a speck of two pixels: dropped
    mask[20:30, 53:63] = 1  # a second call 200 ms after the first ends: its own event
    events = _events_of(mask, granularity="call")
    assert [(round(e.begin, 2), round(e.end, 2)) for e in events] == [(0.1, 0.33), (0.53, 0.63)]
    assert all(e.label == "a" and e.low is not None for e in events)
    syllables = _events_of(mask)  # the default joins only 5 ms gaps: the split call stays two
    assert len(syllables) == 3


def test_harmonics_of_one_call_join_but_a_long_band_does_not_swallow_calls() -> None:
    mask = np.zeros((64, 120), np.uint8)
    mask[40:44, 10:30] = 1  # fundamental ...
    mask[20:24, 11:30] = 1  # ... and its harmonic, 2 kHz higher, at the same time: one event
    mask[58:62, 0:120] = 1  # a steady low band through the whole recording
    mask[5:9, 60:70] = 1  # a short call above it: its own event
    spans = sorted((round(e.begin, 2), round(e.end, 2)) for e in _events_of(mask))
    assert spans == [(0.0, 1.2), (0.1, 0.3), (0.6, 0.7)]


def test_events_of_two_classes_in_overlapping_bands_stay_separate() -> None:
    mask = np.zeros((64, 60), np.uint8)
    mask[20:30, 10:30] = 1
    mask[25:35, 12:28] = 2
    mask[50:60, 32:40] = 1  # same class, 20 ms later but 2 kHz lower: not joined
    events = _events_of(mask, granularity="call")
    assert sorted((e.label, round(e.begin, 2)) for e in events) == [("a", 0.1), ("a", 0.32), ("b", 0.12)]


def test_close_time_gaps_fills_only_short_gaps_in_place() -> None:
    from unetseg.audio.masks import close_time_gaps

    row = np.array([[0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0]], bool)
    for gap, expected in ((1, "00111000100"), (2, "00111000100"), (3, "00111111100")):
        assert "".join(str(int(v)) for v in close_time_gaps(row, gap)[0]) == expected
