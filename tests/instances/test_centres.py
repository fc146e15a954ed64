"""Tests of ``unetseg.instances.centres``."""

from __future__ import annotations

import numpy as np

from tests.fixtures import spectrogram_mapping
from unetseg.audio.masks import mask_to_events
from unetseg.audio.spectrogram import SpectrogramMapping
from unetseg.instances.centres import Box, centre_targets, decode_centres, instance_boxes, paint_boxes


def _corners(boxes: list[Box]) -> list[tuple[float, float, float, float]]:
    return sorted((b.x0, b.y0, b.x1, b.y1) for b in boxes)


def test_touching_calls_on_one_low_band_come_out_as_two_boxes() -> None:
    """Two calls that touch in time over the same band are one connected region of the class mask (the
    component decoding joins them), but two centres: decoding the ideal targets gives both boxes exactly."""
    calls = [Box(10, 20, 30, 40), Box(30, 20, 51, 40)]  # odd and even widths: the edges carry the offset
    ids = paint_boxes(calls, (64, 80))
    assert set(np.unique(ids)) == {0, 1, 2}
    mapping = SpectrogramMapping(1000, 0, 10, 20, list(np.linspace(8000, 0, 64).round(3)), {})
    regions = mask_to_events((ids > 0).astype(np.uint8), mapping, ["background", "call"])
    assert len(regions) == 1  # connected components: one event for both calls
    heat, edges, where = centre_targets(ids)
    assert where.sum() == 2 and heat.max() == 1.0 and heat[where].tolist() == [1.0, 1.0]
    found = decode_centres(heat, edges)
    assert _corners(found) == _corners(calls)
    assert all(b.score == 1.0 for b in found)


def test_a_small_box_inside_a_large_one_stays_visible_and_both_decode() -> None:
    big, small = Box(0, 0, 40, 30), Box(25, 5, 33, 12)
    ids = paint_boxes([big, small], (32, 48))  # the small one on top whatever the order given
    assert ids[8, 28] == 2 and ids[20, 5] == 1
    assert instance_boxes(ids)[2] == Box(25, 5, 33, 12)
    heat, edges, _ = centre_targets(ids)
    assert _corners(decode_centres(heat, edges)) == _corners([big, small])


def test_decoding_thresholds_peaks_and_suppresses_duplicates() -> None:
    heat = np.zeros((20, 20), np.float32)
    edges = np.zeros((4, 20, 20), np.float32)
    heat[10, 5], heat[10, 7], heat[3, 15] = 0.9, 0.8, 0.2  # two peaks of one object, one weak peak
    edges[:, 10, 5] = (3, 3, 4, 4)
    edges[:, 10, 7] = (5, 3, 2, 4)  # the same box seen from another pixel
    (box,) = decode_centres(heat, edges, threshold=0.3)
    assert (box.x0, box.y0, box.x1, box.y1, box.score) == (2.0, 7.0, 9.0, 14.0, np.float32(0.9))
    assert len(decode_centres(heat, edges, threshold=0.1, nms_iou=0.5)) == 2  # the weak peak, too
    assert len(decode_centres(heat, edges, threshold=0.3, nms_iou=1.0)) == 2  # no suppression
    assert decode_centres(np.zeros((8, 8), np.float32), np.zeros((4, 8, 8), np.float32)) == []


def test_targets_of_an_empty_mask_are_empty() -> None:
    heat, edges, where = centre_targets(np.zeros((16, 16), np.uint16))
    assert not heat.any() and not edges.any() and not where.any()


def test_component_ids_number_each_object_of_each_class() -> None:
    from unetseg.instances.centres import component_ids

    mask = np.zeros((12, 12), np.uint8)
    mask[1:3, 1:3] = 1
    mask[1:3, 8:11] = 1  # a second object of class 1
    mask[6:9, 1:5] = 2
    mask[6:9, 5:7] = 1  # touches the class-2 object: still its own
    ids = component_ids(mask, 3)
    assert ids.dtype == np.uint16 and ids.max() == 4
    assert np.array_equal(ids > 0, mask > 0)
    for k in range(1, 5):  # one class per object
        assert len(np.unique(mask[ids == k])) == 1
    assert len(np.unique(ids[mask == 1])) == 3 and len(np.unique(ids[mask == 2])) == 1


def test_instance_targets_from_boxes_and_time_only_labels() -> None:
    """Raven-style boxes become their boxes; an onset/offset syllable takes the band of its energetic rows."""
    from unetseg.audio.annotations import Event
    from unetseg.audio.masks import energetic_band, events_to_instances

    mapping = spectrogram_mapping(64)
    image = np.full((64, 100), 20, np.uint8)
    image[30:40, 50:70] = 200  # the syllable's energy: rows 30..39
    image[5:8, 50:70] = 150  # a fainter harmonic above it
    times = [mapping.column_time(j) for j in (50, 69)]
    syllable = Event(times[0], times[1], None, None, "a")
    box = Event(mapping.column_time(10), mapping.column_time(19), 2000.0, 4000.0, "b")
    ids = events_to_instances([syllable, box], mapping, (64, 100), None, image)
    boxes = instance_boxes(ids)
    assert len(boxes) == 2
    assert boxes[1] == Box(50, 5, 70, 40)  # from the harmonic down to the syllable's lowest energetic row
    hz = np.asarray(mapping.row_hz)
    rows = np.nonzero((hz >= 2000) & (hz <= 4000))[0]
    assert boxes[2] == Box(10, int(rows.min()), 20, int(rows.max()) + 1)
    assert energetic_band(np.zeros((64, 100), np.uint8), slice(0, 10), np.ones(64, bool)) is None
    without_image = instance_boxes(events_to_instances([syllable], mapping, (64, 100)))
    assert without_image[1] == Box(50, 0, 70, 64)  # no image: every positive row
    only_a = instance_boxes(events_to_instances([syllable, box], mapping, (64, 100), ["b"], image))
    assert list(only_a.values()) == [boxes[2]]  # labels not listed are left out


def test_suppression_keeps_what_the_pairwise_rules_keep_and_scales_to_thousands_of_peaks() -> None:
    """The vectorised greedy suppression equals the rule written pair by pair (IoU for peaks, nesting within a
    class for boxes), and a heatmap that fires everywhere decodes in well under a second."""
    import time

    from unetseg.instances.centres import nested, suppress_nested

    rng = np.random.default_rng(0)
    for _ in range(20):
        xy = rng.uniform(0, 50, (60, 2))
        size = rng.uniform(0, 12, (60, 2))
        boxes = [(Box(x, y, x + w, y + h, float(s)), int(c)) for (x, y), (w, h), s, c in
                 zip(xy, size, rng.random(60), rng.integers(1, 3, 60), strict=True)]
        expected: list = []
        for box, label in sorted(boxes, key=lambda bl: -bl[0].score):
            if all(k != label or not nested(box, b) for b, k in expected):
                expected.append((box, label))
        assert suppress_nested(boxes) == expected
        heat, edges = rng.random((40, 60)), rng.uniform(0, 6, (4, 40, 60))
        peaks = decode_centres(heat, edges, threshold=0.2, nms_iou=0.3)
        assert all(a.iou(b) <= 0.3 for i, a in enumerate(peaks) for b in peaks[:i])  # no pair above the IoU
    heat = rng.random((256, 1024))
    start = time.perf_counter()
    decoded = decode_centres(heat, rng.uniform(0, 3, (4, 256, 1024)), threshold=0.1)
    assert len(decoded) > 100 and time.perf_counter() - start < 5.0


def test_neighbourhood_max_is_scipys_maximum_filter() -> None:
    from scipy import ndimage

    from unetseg.instances.centres import neighbourhood_max

    rng = np.random.default_rng(1)
    for shape in ((1, 1), (1, 7), (5, 1), (33, 48)):
        heat = rng.random(shape).astype(np.float32)
        heat[rng.random(shape) < 0.2] = 0.5  # ties
        expected = ndimage.maximum_filter(heat, size=3, mode="constant", cval=-np.inf)
        assert np.array_equal(neighbourhood_max(heat), expected)
