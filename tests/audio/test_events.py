"""Tests of ``unetseg.audio.events``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.fixtures import column_mapping, spectrogram_mapping
from unetseg.audio.masks import mask_to_events
from unetseg.instances.centres import Box, centre_targets, paint_boxes


def test_column_tracker_is_the_same_whatever_the_pieces() -> None:
    from unetseg.audio.events import EventTracker
    from unetseg.audio.settings import EventOptions

    rng = np.random.default_rng(0)
    active = np.repeat(rng.random(60) < 0.4, 5)  # runs of 5 columns
    probs = np.where(active[None], 0.9, 0.1) * np.ones((4, 1)) + rng.normal(0, 0.02, (4, 300))
    options = EventOptions(min_duration=0.02, merge_gap=0.01)
    whole = EventTracker(column_mapping(), ["background", "call"], options, columns=True)
    whole.push((probs > 0.5).astype(np.uint8), probs)
    pieces = EventTracker(column_mapping(), ["background", "call"], options, columns=True)
    for a, b in ((0, 7), (7, 123), (123, 124), (124, 300)):
        pieces.push((probs[:, a:b] > 0.5).astype(np.uint8), probs[:, a:b])
    assert whole.finish() == pieces.finish() and len(whole.events) > 5


def _head(ids: np.ndarray) -> np.ndarray:
    """The instance head's maps a perfect model would give: heat and edge distances (5, rows, columns)."""
    heat, edges, _ = centre_targets(ids)
    return np.concatenate([heat[None], edges]).astype(np.float32)


def test_two_calls_sharing_a_low_band_decode_as_two_events_not_one() -> None:
    """The spinetail failure in small: a low band under every call joins them into one connected region, so
    components give one event for the whole recording; the instance head gives one event per call."""
    from unetseg.audio.events import instances_to_events
    from unetseg.audio.settings import EventOptions

    calls = [Box(10, 10, 30, 30), Box(30, 12, 50, 28)]  # touching in time
    ids = paint_boxes(calls, (64, 80))
    mask = (ids > 0).astype(np.uint8)
    mask[29:35, :] = 1  # a low band across the whole recording, touching the calls
    mapping = spectrogram_mapping(64)
    names = ["background", "call"]
    assert len(mask_to_events(mask, mapping, names)) == 1
    events = instances_to_events(_head(ids), mask, mapping, names, EventOptions(min_duration=0.0), cut=80)
    assert len(events) == 2 and all(e.label == "call" and e.score == 1.0 for e in events)
    half = mapping.column_seconds / 2
    for e, b in zip(sorted(events, key=lambda e: e.begin), calls, strict=True):
        assert e.begin == round(mapping.column_time(b.x0) - half, 6)
        assert e.end == round(mapping.column_time(b.x1 - 1) + half, 6)
        assert e.high == round(mapping.row_hz[int(b.y0)] + 8000 / 63 / 2, 3)
    joined = instances_to_events(_head(ids), mask, mapping, names, EventOptions(granularity="song"), cut=80)
    assert len(joined) == 1  # song groups the instances (not the components: the band stays out)
    assert joined[0].begin == events[0].begin and joined[0].end == max(e.end for e in events)
    assert joined[0].low == events[0].low  # the band is no part of either call


def test_streamed_instances_are_the_same_whatever_the_block_size() -> None:
    """The tracker decodes instances per flushed segment: blocks of any size, cut anywhere, give the events of
    one pass (a peak at a cut is decided with the column after it; boxes reaching past a cut are not found
    twice)."""
    from unetseg.audio.events import EventTracker
    from unetseg.audio.settings import EventOptions

    rng = np.random.default_rng(0)
    starts = np.cumsum(rng.integers(12, 30, 20))
    calls = [Box(float(s), float(r), float(s + w), float(r + h)) for s, r, w, h in
             zip(starts, rng.integers(2, 30, 20), rng.integers(8, 25, 20), rng.integers(4, 20, 20), strict=True)]
    ids = paint_boxes(calls, (48, int(starts[-1]) + 40))
    head, mask = _head(ids), (ids > 0).astype(np.uint8)
    probs = mask.astype(np.float32)
    options = EventOptions(min_duration=0.0, max_event_seconds=0.5)  # cuts every 50 columns at least
    results = []
    for block in (mask.shape[1], 7, 33):
        tracker = EventTracker(spectrogram_mapping(48), ["background", "call"], options)
        for a in range(0, mask.shape[1], block):
            tracker.push(mask[:, a:a + block], probs[:, a:a + block], head[:, :, a:a + block])
        results.append(tracker.finish())
    assert len(results[0]) == len(calls)
    assert results[1] == results[0] and results[2] == results[0]


def test_raven_table_of_instance_events_matches_the_golden_file(tmp_path) -> None:

    from unetseg.audio.annotations import write_events
    from unetseg.audio.events import instances_to_events
    from unetseg.audio.settings import EventOptions

    calls = [Box(10, 10, 30, 30), Box(30, 12, 50, 28), Box(60, 40, 64, 44)]
    ids = paint_boxes(calls, (64, 80))
    mask = (ids > 0).astype(np.uint8) * np.uint8(2)
    mask[12:26, 30:50] = 1  # most of the second call is class a; the rest b
    mask[12:26, 30:35] = 2
    head = _head(ids)
    for k, peak in ((1, 0.9), (2, 0.75), (3, 0.6)):  # each call's heat scaled to its own peak score
        head[0][ids == k] *= peak
    events = instances_to_events(head, mask, spectrogram_mapping(64), ["background", "a", "b"],
                                 EventOptions(min_duration=0.0), cut=80)
    written = write_events(tmp_path / "calls.selections.txt", events)
    golden = Path(__file__).parents[1] / "golden" / "instances.selections.txt"
    assert written.read_text() == golden.read_text()


def test_touching_syllables_are_split_between_the_heads_peaks() -> None:
    """Time-only models: the mask's segment of two touching syllables is cut at the least foreground column
    between the head's two peaks; a segment with one peak, or none, stays whole; onsets and offsets are the
    mask's."""
    from unetseg.audio.events import EventTracker, split_segments
    from unetseg.audio.settings import EventOptions

    mapping = spectrogram_mapping(16)
    fg = np.zeros(100, np.float32)
    fg[10:40] = 0.9
    fg[24:26] = 0.6  # the dip where one syllable hands over to the next
    fg[60:70] = 0.8  # a syllable the head found
    fg[80:85] = 0.7  # and one it did not
    heat = np.zeros((16, 100), np.float32)
    heat[8, 17], heat[6, 32], heat[7, 65] = 0.9, 0.8, 0.7
    labels = (fg > 0.5).astype(np.uint8)
    options = EventOptions(min_duration=0.0, merge_gap=0.0, peak_threshold=0.3)
    events = split_segments(heat, labels, fg[None], mapping, ["background", "call"], options)
    half = mapping.column_seconds / 2
    spans = [(round(mapping.column_time(a) - half, 6), round(mapping.column_time(b - 1) + half, 6))
             for a, b in ((10, 24), (24, 40), (60, 70), (80, 85))]
    assert [(e.begin, e.end) for e in events] == spans
    assert [e.score for e in events] == [0.9, 0.8, 0.7, 0.0] and all(e.low is None for e in events)
    # The tracker takes this path for a time-only model with the head, whatever the block size.
    probs = np.repeat(fg[None], 16, axis=0)
    head = np.concatenate([heat[None], np.zeros((4, 16, 100), np.float32)])
    for block in (100, 13):
        tracker = EventTracker(mapping, ["background", "call"], options, columns=True, threshold=0.5)
        for a in range(0, 100, block):
            tracker.push((probs[:, a:a + block] > 0.5).astype(np.uint8), probs[:, a:a + block],
                         head[:, :, a:a + block])
        assert [(e.begin, e.end) for e in tracker.finish()] == spans
    # call and song join segments as without the head, and the head's pending columns go with the mask's.
    joined = EventOptions(granularity="call", min_duration=0.0, peak_threshold=0.3)
    tracker = EventTracker(mapping, ["background", "call"], joined, columns=True, threshold=0.5)
    for a in range(0, 100, 13):
        tracker.push((probs[:, a:a + 13] > 0.5).astype(np.uint8), probs[:, a:a + 13], head[:, :, a:a + 13])
        columns, head_columns = tracker.pending
        assert head_columns == columns
    plain = EventTracker(mapping, ["background", "call"], joined, columns=True, threshold=0.5)
    plain.push((probs > 0.5).astype(np.uint8), probs)
    assert tracker.finish() == plain.finish()
