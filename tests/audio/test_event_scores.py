"""Tests of ``unetseg.audio.event_scores``."""

from __future__ import annotations

import numpy as np
import pytest

from unetseg.audio.annotations import Event
from unetseg.audio.event_scores import event_scores, frame_scores, sdr, segment_error_rate


def test_event_metrics_on_known_cases() -> None:
    ref = [Event(1.0, 2.0, label="a"), Event(3.0, 3.5, label="a"), Event(5.0, 6.0, label="b")]
    est = [Event(1.03, 2.1, label="a"), Event(3.2, 3.5, label="a"), Event(5.0, 6.0, label="a")]
    assert event_scores(ref, est, collar=0.05)["tp"] == 1
    assert event_scores(ref, est, collar=0.05, ignore_labels=True)["tp"] == 2
    frames = frame_scores(ref, est, 7.0, ignore_labels=True)
    assert frames["recall"] == pytest.approx((0.97 + 0.3 + 1.0) / 2.5, abs=0.005)
    seg = segment_error_rate(ref, [], 7.0)
    assert seg["error_rate"] == 1.0 and seg["deletions"] == 3
    t = np.linspace(0, 1, 8000)
    clean = np.sin(2 * np.pi * 440 * t)
    assert sdr(clean, clean + 0.1 * clean) == pytest.approx(20.0, abs=0.01)


def test_box_level_event_metric() -> None:
    from unetseg.audio.event_scores import box_iou, box_scores, false_alarms_per_minute

    ref = [Event(1.0, 2.0, 1000, 3000, "x"), Event(5.0, 6.0, 1000, 3000, "x")]
    est = [Event(1.1, 2.0, 1200, 3000, "x"), Event(5.0, 6.0, 5000, 7000, "x"), Event(8.0, 9.0, 100, 200, "x")]
    assert box_iou(ref[0], est[0]) == pytest.approx(0.9 * 1800 / 2000)
    scores = box_scores(ref, est, min_iou=0.3)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 2, 1) and scores["matched_by"] == "box IoU >= 0.3"
    time_only = [Event(1.0, 2.0, label="x")]
    assert box_scores(time_only, est)["matched_by"] == "onset/offset"
    assert false_alarms_per_minute([], est, 30.0) == 6.0


def test_average_precision_ranks_events_by_score() -> None:
    """COCO AP on hand-counted cases: 101 recall points, precision interpolated from the right."""
    from unetseg.audio.event_scores import average_precision

    ref = [Event(1.0, 2.0, 1000, 3000, "x", file="a"), Event(5.0, 6.0, 1000, 3000, "x", file="a"),
           Event(1.0, 2.0, 2000, 4000, "x", file="b")]
    hits = [Event(1.0, 2.0, 1000, 3000, "x", 0.9, file="a"), Event(5.0, 6.0, 1000, 3000, "x", 0.8, file="a")]
    assert average_precision(ref, [*hits, Event(1.0, 2.0, 2000, 4000, "x", 0.7, file="b")]) == {
        "ap": 1.0, "ap50": 1.0, "ap75": 1.0, "ap50_per_category": {"1": 1.0}}
    # Two of three found; a false event ranked below them leaves precision 1 up to recall 2/3 (67 of 101
    # recall points), ranked above them it caps precision at 2/3 there.
    low = average_precision(ref, [*hits, Event(8.0, 9.0, 100, 200, "x", 0.1, file="a")])
    high = average_precision(ref, [*hits, Event(8.0, 9.0, 100, 200, "x", 0.95, file="a")])
    assert low["ap50"] == pytest.approx(67 / 101, abs=1e-4)
    assert high["ap50"] == pytest.approx(67 / 101 * 2 / 3, abs=1e-4)
    # The same times in another band are a miss in time x frequency, a hit against a time-only reference.
    shifted = [Event(1.0, 2.0, 6000, 8000, "x", 0.9, file="a")]
    assert average_precision(ref[:1], shifted)["ap50"] == 0.0
    assert average_precision([Event(1.0, 2.0, label="x", file="a")], shifted)["ap50"] == 1.0
    assert average_precision([], shifted)["ap"] is None and average_precision(ref, [])["ap"] == 0.0
    # Labels must agree unless ignored.
    other = [Event(1.0, 2.0, 1000, 3000, "y", 0.9, file="a")]
    assert average_precision(ref[:1], other)["ap50"] == 0.0
    assert average_precision(ref[:1], other, ignore_labels=True)["ap50"] == 1.0


def test_event_metrics_by_intervals_equal_the_per_frame_and_dense_definitions() -> None:
    """Issue 28: frame and segment scores are computed on runs of frames and the matchings on candidate pairs
    (an event ending at 1e9 s, or 20,000 x 20,000 events, no longer allocate GBs); on random tables they equal
    the per-frame arrays and the dense assignment they replace."""
    import math

    from scipy.optimize import linear_sum_assignment

    from unetseg.audio.event_scores import box_iou, box_scores, event_scores, frame_scores, segment_error_rate

    def frames(events: list, labels: list, step: float, n: int) -> np.ndarray:
        act = np.zeros((len(labels), n), bool)
        for e in events:
            a, b = int(math.floor(e.begin / step)), int(math.ceil(e.end / step))
            act[labels.index(e.label), max(a, 0):min(b, n)] = True
        return act

    rng = np.random.default_rng(3)
    for _ in range(25):
        def table(k: int) -> list[Event]:
            out = []
            for _ in range(k):
                b, lo = rng.uniform(0, 20), rng.uniform(0, 5000)
                label = str(rng.choice(["a", "b"]))
                out.append(Event(b, b + rng.uniform(0.01, 2), lo, lo + rng.uniform(100, 3000), label))
            return out
        ref = table(int(rng.integers(1, 25)))
        est = [Event(max(0.0, e.begin + rng.normal(0, 0.04)), e.end + rng.normal(0, 0.05) + 0.1, e.low, e.high, e.label)
               for e in ref if rng.random() < 0.8] + table(int(rng.integers(0, 8)))
        labels = sorted({e.label for e in ref + est})
        r, s = frames(ref, labels, 0.01, 2500), frames(est, labels, 0.01, 2500)
        got = frame_scores(ref, est, 25.0)
        assert (got["tp"], got["fp"], got["fn"]) == (int((r & s).sum()), int((~r & s).sum()), int((r & ~s).sum()))
        r, s = frames(ref, labels, 1.0, 25), frames(est, labels, 1.0, 25)
        fn, fp = (r & ~s).sum(axis=0), (~r & s).sum(axis=0)
        seg = segment_error_rate(ref, est, 25.0)
        assert (seg["substitutions"], seg["deletions"], seg["insertions"]) == (
            int(np.minimum(fn, fp).sum()), int(np.maximum(0, fn - fp).sum()), int(np.maximum(0, fp - fn).sum()))
        iou = np.array([[box_iou(a, b) if a.label == b.label else 0.0 for b in est] for a in ref])
        rows, cols = linear_sum_assignment(-np.where(iou >= 0.3, iou, 0))
        assert box_scores(ref, est, 0.3)["tp"] == int((iou[rows, cols] >= 0.3).sum())
        assert event_scores(ref, est, 0.2)["tp"] <= len(ref)
    far = [Event(0.1, 0.3, label="call"), Event(9.99e8, 1e9, label="call")]
    assert frame_scores(far, far, 1e9)["tp"] == 20 + 100_000_000  # runs, not 1e11 frames
