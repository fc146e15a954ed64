"""Instance targets and their decoding on tiny arrays (unetseg.instances.centres)."""

from __future__ import annotations

import numpy as np

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


# ------------------------------------------------------------------------------ spectrogram instances

def _head(ids: np.ndarray) -> np.ndarray:
    """The instance head's maps a perfect model would give: heat and edge distances (5, rows, columns)."""
    heat, edges, _ = centre_targets(ids)
    return np.concatenate([heat[None], edges]).astype(np.float32)


def _mapping(rows: int) -> SpectrogramMapping:
    return SpectrogramMapping(1000, 0, 10, 20, list(np.linspace(8000, 0, rows).round(3)), {})


def test_two_calls_sharing_a_low_band_decode_as_two_events_not_one() -> None:
    """The spinetail failure in small: a low band under every call joins them into one connected region, so
    components give one event for the whole recording; the instance head gives one event per call."""
    from unetseg.audio.events import instances_to_events
    from unetseg.audio.settings import EventOptions

    calls = [Box(10, 10, 30, 30), Box(30, 12, 50, 28)]  # touching in time
    ids = paint_boxes(calls, (64, 80))
    mask = (ids > 0).astype(np.uint8)
    mask[29:35, :] = 1  # a low band across the whole recording, touching the calls
    mapping = _mapping(64)
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
        tracker = EventTracker(_mapping(48), ["background", "call"], options)
        for a in range(0, mask.shape[1], block):
            tracker.push(mask[:, a:a + block], probs[:, a:a + block], head[:, :, a:a + block])
        results.append(tracker.finish())
    assert len(results[0]) == len(calls)
    assert results[1] == results[0] and results[2] == results[0]


def test_instance_targets_from_boxes_and_time_only_labels() -> None:
    """Raven-style boxes become their boxes; an onset/offset syllable takes the band of its energetic rows."""
    from unetseg.audio.annotations import Event
    from unetseg.audio.masks import energetic_band, events_to_instances

    mapping = _mapping(64)
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


def test_raven_table_of_instance_events_matches_the_golden_file(tmp_path) -> None:
    from pathlib import Path

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
    events = instances_to_events(head, mask, _mapping(64), ["background", "a", "b"], EventOptions(min_duration=0.0),
                                 cut=80)
    written = write_events(tmp_path / "calls.selections.txt", events)
    golden = Path(__file__).parent / "data" / "instances.selections.txt"
    assert written.read_text() == golden.read_text()


# ------------------------------------------------------------------------------------ the whole path

def test_a_model_with_the_instance_head_trains_predicts_evaluates_and_exports(tmp_path, capsys) -> None:
    """Instance-ID PNGs beside the masks turn the head on (plan: auto); one model file holds both heads and
    ``info`` says so; predict writes the head's instances; ONNX export carries the head's maps."""
    import json

    import onnxruntime as ort
    from PIL import Image

    from unetseg.core.fileio import write_png
    from unetseg.data.images import read_instance_ids, read_mask_raw
    from unetseg.inference import Engine, ImageDataset, InferenceOptions
    from unetseg.instances.centres import HEAD_CHANNELS, component_ids
    from unetseg.models.modelfile import load_model

    from .conftest import write_binary_dataset
    from .test_e2e import TINY, assert_one_line_error, run

    data = write_binary_dataset(tmp_path / "calls", {"train": 12, "valid": 4})
    code, _, err = run(["train", "--data", str(data), "--size", "64", "--epochs", "1", "--runs-dir",
                        str(tmp_path / "runs"), "--no-test", "--instances", "on", *TINY], capsys)
    assert_one_line_error(code, err, "train0.png", "--instances on needs an instance-ID PNG")
    for mask_path in sorted(data.glob("*/masks/*.png")):
        ids = component_ids((read_mask_raw(mask_path) > 0).astype(np.uint8), 2)
        write_png(mask_path.parent.parent / "instances" / mask_path.name, ids)
    code, out, err = run(["train", "--data", str(data), "--size", "64", "--epochs", "1", "--runs-dir",
                          str(tmp_path / "runs"), "--name", "head", "--no-test", *TINY], capsys)
    assert code == 0, err
    model = tmp_path / "runs" / "head" / "weights" / "best.safetensors"
    code, out, _ = run(["info", str(model)], capsys)
    assert code == 0 and json.loads(out)["model"]["instances"] == "on"
    loaded = load_model(model)
    assert loaded.head and loaded.outputs == 1
    images = sorted((data / "valid" / "images").glob("*.png"))
    engine = Engine(loaded, InferenceOptions(backend="torch"))
    for item, probs in engine.run(ImageDataset(images, loaded.input_spec)):
        assert probs.shape == (1, 64, 64) and item["head"].shape == (HEAD_CHANNELS, 64, 64)
        assert float(item["head"][0].min()) >= 0 and float(item["head"][0].max()) <= 1
        assert float(item["head"][1:].min()) >= 0  # edge distances in pixels
    code, _, err = run(["predict", "--model", str(model), "--input", str(data / "valid" / "images"), "--output",
                        str(tmp_path / "pred"), "--instances", "--coco-results", str(tmp_path / "coco.json")], capsys)
    assert code == 0, err
    ids = read_instance_ids(tmp_path / "pred" / "instances" / "valid0.png")
    assert ids.dtype == np.uint16 and Image.open(tmp_path / "pred" / "instances" / "valid0.png").mode.startswith("I")
    results = json.loads((tmp_path / "coco.json").read_text())
    assert all(r["score"] > 0.3 for r in results)  # the head's peaks above its threshold
    from fastapi.testclient import TestClient

    from unetseg.serve import ServeOptions, create_app, load_models

    options = ServeOptions(backend="torch")
    with TestClient(create_app(load_models([model], options), options)) as c:  # the page's objects: the head's
        found = c.post("/predict?format=json&objects=true", content=(images[0]).read_bytes()).json()
    assert found["objects_from"] == "instances"
    assert sorted(o["area"] for o in found["objects"]) == sorted(int((ids == k).sum()) for k in np.unique(ids) if k)
    code, _, err = run(["evaluate", "--model", str(model), "--split", "valid", "--output", str(tmp_path / "ev"),
                        "--figures", "0"], capsys)
    assert code == 0, err
    scored = json.loads((tmp_path / "ev" / "metrics.json").read_text())["instances"]
    assert scored["truth"] == "instance-ID PNGs" and scored["objects"].startswith("the instance head")
    assert scored["truth_objects"] >= 4 and 0 <= scored["box"]["ap50"] <= 1
    code, _, err = run(["export", "--model", str(model), "--output", str(tmp_path / "m.onnx")], capsys)
    assert code == 0, err
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    x = np.zeros((1, 1, 64, 64), np.float32)
    (out_maps,) = session.run(None, {session.get_inputs()[0].name: x})
    assert out_maps.shape == (1, 1 + HEAD_CHANNELS, 64, 64)


def test_every_architecture_gets_the_head_from_its_last_layer() -> None:
    """Classic U-Net and smp architectures: five more output channels after the class maps, from the same last
    layer (a heatmap starting at its prior, 0.1); the rest of the network is the model without the head."""
    import torch

    from unetseg.instances.centres import HEAD_CHANNELS, HEAT_PRIOR
    from unetseg.models import create_model

    classic = {"arch": "classic", "depth": 2, "base_width": 4, "batch_norm": True, "dropout": 0.0,
               "attention": False}
    torch.manual_seed(0)  # the heat's mean at initialisation depends on the random weights around its bias
    for cfg in (classic, {"arch": "unet", "encoder": "resnet18"}, {"arch": "deeplabv3plus", "encoder": "resnet18"}):
        plain, headed = create_model(cfg, 3, 4).eval(), create_model({**cfg, "instances": "on"}, 3, 4).eval()
        own, theirs = headed.state_dict(), plain.state_dict()
        assert set(own) == set(theirs)
        assert [k for k in own if own[k].shape != theirs[k].shape][-1].endswith("bias")  # the last layer only
        with torch.no_grad():
            out = headed(torch.rand(1, 3, 64, 64))
        assert out.shape == (1, 4 + HEAD_CHANNELS, 64, 64), cfg["arch"]
        last = [m for m in headed.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        assert abs(float(torch.sigmoid(last.bias[4].detach())) - HEAT_PRIOR) < 1e-6  # the bias: the prior
        assert abs(float(torch.sigmoid(out[:, 4]).mean()) - HEAT_PRIOR) < 0.1


def test_touching_syllables_are_split_between_the_heads_peaks() -> None:
    """Time-only models: the mask's segment of two touching syllables is cut at the least foreground column
    between the head's two peaks; a segment with one peak, or none, stays whole; onsets and offsets are the
    mask's."""
    from unetseg.audio.events import EventTracker, split_segments
    from unetseg.audio.settings import EventOptions

    mapping = _mapping(16)
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
        assert tracker._head.shape[-1] == tracker._mask.shape[-1]
    plain = EventTracker(mapping, ["background", "call"], joined, columns=True, threshold=0.5)
    plain.push((probs > 0.5).astype(np.uint8), probs)
    assert tracker.finish() == plain.finish()


def test_flip_averaging_keeps_left_edges_left() -> None:
    """--tta runs flipped copies: flipping back must also swap left/right (top/bottom) edge distances."""
    import torch

    from unetseg.inference.classes import unflip

    def model(x: torch.Tensor) -> torch.Tensor:  # one class map, then heat and the distances to the borders
        n, _, h, w = x.shape
        cols = torch.arange(w, dtype=torch.float32).expand(n, 1, h, w)
        rows = torch.arange(h, dtype=torch.float32)[:, None].expand(n, 1, h, w)
        return torch.cat([x, x, cols, rows, w - 1 - cols, h - 1 - rows], dim=1)

    x = torch.rand(1, 1, 6, 8)
    for dim in (2, 3):
        assert torch.equal(unflip(model(x.flip(dim)), dim, head=1), model(x))
    y = torch.rand(1, 3, 6, 8)
    assert torch.equal(unflip(y, 3), y.flip(3))  # without a head: a plain flip back
