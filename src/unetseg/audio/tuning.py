"""Detect's event settings tuned on the validation split of an annotated spectrogram dataset.

Time-only (onset/offset) annotations: the model decodes the validation windows per column; a small grid of
threshold, minimum duration and merge gap is scored by onset/offset F1 (both within ``collar``) against
the segments of the validation masks. Box annotations: the windows are decoded as regions at each
threshold and granularity, scored by box-level F1 (time x frequency IoU >= 0.3) against the boxes of the
validation masks. The best setting is stored in the model file, where ``audio detect`` takes it as its
default (flags still override it).
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from unetseg.audio.annotations import Event
from unetseg.audio.event_scores import event_scores
from unetseg.audio.events import decoding
from unetseg.audio.masks import column_labels, column_probabilities, columns_to_events
from unetseg.audio.spectrogram import SpectrogramMapping
from unetseg.data.discover import DatasetInfo
from unetseg.data.images import read_image, read_mask_raw
from unetseg.models.modelfile import load_model, save_model_file

log = logging.getLogger(__name__)

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
MIN_DURATIONS = (0.0, 0.01, 0.02, 0.03)  # s
MERGE_GAPS = (0.0, 0.005, 0.01, 0.02)  # s
COLLAR = 0.02  # s, onset and offset
BOX_IOU = 0.3  # time x frequency IoU of a box-level match


def pooled_f1(scores: Iterable[dict[str, Any]]) -> float:
    """F1 of matches counted per window (``tp``, ``fp``, ``fn`` of each) and summed over the windows."""
    tp = fp = fn = 0
    for s in scores:
        tp, fp, fn = tp + int(s["tp"]), fp + int(s["fp"]), fn + int(s["fn"])
    return 2 * tp / max(2 * tp + fp + fn, 1)


class Window(NamedTuple):
    """A validation window: its pixels, class mask, pixel mapping and instance-ID PNG (if the dataset has one)."""

    image: np.ndarray
    mask: np.ndarray
    mapping: SpectrogramMapping
    instances: Path | None


def _windows(info: DatasetInfo, limit: int) -> list[Window]:
    pairs = info.split("valid")
    step = max(1, len(pairs) // limit)
    out = []
    for pair in pairs[::step][:limit]:
        sidecar = pair.image.with_suffix(".json")
        if not sidecar.is_file():
            continue
        mapping = SpectrogramMapping.from_dict(json.loads(sidecar.read_text()))
        image = np.round(read_image(pair.image, 1)[:, :, 0] * 255).astype(np.uint8)  # the engine takes pixels
        mask = info.decoder.decode(read_mask_raw(pair.mask), pair.mask)
        out.append(Window(image, mask, mapping, pair.instances))
    return out


def _predict(model_path: str | Path, info: DatasetInfo, limit: int, head: bool = False
             ) -> tuple[Any, list, list[np.ndarray]] | None:
    """The model, up to ``limit`` validation windows and the model's probabilities on each (None without
    window sidecars)."""
    from unetseg.inference import Engine, InferenceOptions

    windows = _windows(info, limit)
    if not windows:
        return None
    loaded = load_model(model_path)
    engine = Engine(loaded, InferenceOptions(backend="torch"))
    keep = None if head else loaded.outputs  # the class maps, or (``head``) the instance head's maps too
    return loaded, windows, [engine.native(w.image[None])[0, :keep] for w in windows]


def tune_time_events(model_path: str | Path, info: DatasetInfo, limit: int = 200) -> dict[str, Any] | None:
    """Tune threshold, min_duration and merge_gap on up to ``limit`` validation windows; return the best
    setting with its F1 (None when the split has no window sidecars)."""
    predicted = _predict(model_path, info, limit)
    if predicted is None:
        return None
    loaded, windows, all_probs = predicted
    names = loaded.classes
    pooled, truth = [], []
    for (_, mask, mapping, _), probs in zip(windows, all_probs, strict=True):
        positive = np.asarray(mapping.row_hz) >= 0
        pooled.append((column_probabilities(probs[0] if loaded.binary else probs, positive), mapping))
        truth.append(reference_events(mask, mapping, names))
    best: dict[str, Any] | None = None
    for threshold, min_duration, gap in itertools.product(THRESHOLDS, MIN_DURATIONS, MERGE_GAPS):
        f1 = pooled_f1(event_scores(ref, columns_to_events(column_labels(p, threshold), p, mapping, names,
                                                           min_duration, gap), collar=COLLAR, offset_ratio=0.0)
                       for (p, mapping), ref in zip(pooled, truth, strict=True))
        if best is None or f1 > best["f1"]:
            best = {"threshold": threshold, "min_duration": min_duration, "merge_gap": gap, "f1": round(f1, 4)}
    assert best is not None
    best.update({"tuned_on": "valid", "windows": len(windows), "collar_s": COLLAR,
                 "reference_events": sum(len(r) for r in truth)})
    return best


def tune_box_events(model_path: str | Path, info: DatasetInfo, limit: int = 200) -> dict[str, Any] | None:
    """Tune threshold and granularity of region decoding on up to ``limit`` validation windows of a
    box-annotated dataset; return the best setting with its box F1 (None without window sidecars)."""
    from unetseg.audio.event_scores import box_scores
    from unetseg.audio.masks import mask_to_events
    from unetseg.audio.settings import GRANULARITY, EventOptions
    from unetseg.inference import to_classes

    predicted = _predict(model_path, info, limit)
    if predicted is None:
        return None
    loaded, windows, probs = predicted
    names = loaded.classes
    truth = [mask_to_events(w.mask, w.mapping, names) for w in windows]  # the drawn boxes
    best: dict[str, Any] | None = None
    for threshold in THRESHOLDS:
        masks = [to_classes(p, loaded.binary, threshold) for p in probs]
        for granularity in GRANULARITY:
            options = EventOptions(granularity=granularity).resolved()
            f1 = pooled_f1(box_scores(ref, mask_to_events(m, mapping, names, p[0] if loaded.binary else p, options),
                                      BOX_IOU)
                           for p, m, (_, _, mapping, _), ref in zip(probs, masks, windows, truth, strict=True))
            if best is None or f1 > best["f1"]:
                best = {"threshold": threshold, "granularity": granularity, "f1": round(f1, 4)}
    assert best is not None
    best.update({"tuned_on": "valid", "windows": len(windows), "metric": f"box F1 (IoU >= {BOX_IOU})",
                 "reference_events": sum(len(r) for r in truth)})
    return best


PEAK_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)


def tune_instance_events(model_path: str | Path, info: DatasetInfo, limit: int = 200) -> dict[str, Any] | None:
    """Models with an instance head: tune the peak threshold, minimum duration and (boxes) granularity of
    instance decoding on up to ``limit`` validation windows, scored against the windows' instance boxes (box
    F1, IoU >= 0.3) or, for time-only annotations, their syllables (onset/offset F1 within ``COLLAR``)."""
    from unetseg.audio.event_scores import box_scores
    from unetseg.audio.events import box_events, head_boxes
    from unetseg.audio.settings import GRANULARITY, RAW_REGIONS, EventOptions
    from unetseg.data.images import read_instance_ids
    from unetseg.inference import to_classes
    from unetseg.instances.centres import box_class, instance_boxes

    predicted = _predict(model_path, info, limit, head=True)
    if predicted is None:
        return None
    loaded, windows, outputs = predicted
    names = loaded.classes
    truth = []
    for w in windows:
        if info.events == "time":
            truth.append(reference_events(w.mask, w.mapping, names))
        else:
            boxes = instance_boxes(read_instance_ids(w.instances)).values() if w.instances else []
            # the drawn boxes as events, each labelled by the class most of its mask pixels hold
            labelled = [(b, box_class(w.mask, b, len(names)) or 1) for b in boxes]
            truth.append(box_events(labelled, w.mapping, names, RAW_REGIONS))
    if info.events == "time":
        best = _tune_split_segments(loaded, windows, outputs, truth)
    else:
        masks = [to_classes(o[:loaded.outputs], loaded.binary, loaded.threshold) for o in outputs]
        best = None
        # granularity too: a head trained briefly puts several peaks on one long call, which call joins. The
        # boxes depend on the peak threshold only: decoded once per threshold, then grouped each way.
        decoded = {peak: [head_boxes(o[loaded.outputs:], m, mapping, len(names), peak, m.shape[1])
                          for o, m, (_, _, mapping, _) in zip(outputs, masks, windows, strict=True)]
                   for peak in PEAK_THRESHOLDS}
        for granularity, peak, min_duration in itertools.product(GRANULARITY, PEAK_THRESHOLDS, MIN_DURATIONS):
            options = EventOptions(granularity=granularity, min_duration=min_duration, peak_threshold=peak).resolved()
            f1 = pooled_f1(box_scores(ref, box_events(kept, mapping, names, options), BOX_IOU)
                           for kept, (_, _, mapping, _), ref in zip(decoded[peak], windows, truth, strict=True))
            if best is None or f1 > best["f1"]:
                best = {"threshold": loaded.threshold, "peak_threshold": peak, "min_duration": min_duration,
                        "granularity": granularity, "f1": round(f1, 4)}
    assert best is not None
    metric = f"onset/offset F1 (+-{COLLAR * 1000:g} ms)" if info.events == "time" else f"box F1 (IoU >= {BOX_IOU})"
    best.update({"tuned_on": "valid", "windows": len(windows), "metric": metric, "decoding": "instances",
                 "reference_events": sum(len(r) for r in truth)})
    return best


def _tune_split_segments(loaded: Any, windows: list, outputs: list[np.ndarray], truth: list[list[Event]]
                         ) -> dict[str, Any]:
    """Time-only models with the head: threshold, peak threshold, minimum duration and merge gap of
    ``split_segments``, by onset/offset F1."""
    from unetseg.audio.events import split_segments
    from unetseg.audio.settings import EventOptions

    names = loaded.classes
    pooled = []
    for o, (_, _, mapping, _) in zip(outputs, windows, strict=True):
        positive = np.asarray(mapping.row_hz) >= 0
        probs = o[:loaded.outputs]
        pooled.append(column_probabilities(probs[0] if loaded.binary else probs, positive))
    best: dict[str, Any] | None = None
    for threshold, peak, min_duration, gap in itertools.product(THRESHOLDS, PEAK_THRESHOLDS, MIN_DURATIONS,
                                                                MERGE_GAPS):
        options = EventOptions(granularity="syllable", min_duration=min_duration, merge_gap=gap, peak_threshold=peak)
        f1 = pooled_f1(event_scores(ref, split_segments(o[loaded.outputs], column_labels(p, threshold), p, mapping,
                                                        names, options), collar=COLLAR, offset_ratio=0.0)
                       for o, p, (_, _, mapping, _), ref in zip(outputs, pooled, windows, truth, strict=True))
        if best is None or f1 > best["f1"]:
            best = {"threshold": threshold, "peak_threshold": peak, "min_duration": min_duration, "merge_gap": gap,
                    "granularity": "syllable", "f1": round(f1, 4)}
    assert best is not None
    return best


def store_tuned(paths: list[Path], tuned: dict[str, Any]) -> None:
    """Write the tuned settings (and threshold) into model files, atomically."""
    for path in paths:
        loaded = load_model(path)
        meta = {**loaded.meta, "detect": tuned, "threshold": tuned["threshold"]}
        save_model_file(path, loaded.model, meta)


def reference_events(mask: np.ndarray, mapping: SpectrogramMapping, names: list[str]) -> list[Event]:
    """The time-only events a window's mask holds: time-only masks paint whole columns."""
    positive = np.asarray(mapping.row_hz) >= 0
    labels = mask[positive].max(axis=0).astype(np.uint8)
    return columns_to_events(labels, np.zeros((1, len(labels))), mapping, names)


def tune_run(run_dir: str | Path) -> dict[str, Any] | None:
    """After training on annotated recordings: tune detect's settings on the run's validation split (time-only
    labels: threshold, minimum duration, merge gap; boxes: threshold, granularity); store them in both model
    files and in ``detect_tuning.json``. None (and nothing written) for other runs."""
    from unetseg.core.fileio import write_json

    run_dir = Path(run_dir)
    info = DatasetInfo.from_record(json.loads((run_dir / "dataset.json").read_text()))
    if not info.spectrogram or info.events not in ("time", "box"):
        return None
    weights = run_dir / "weights"
    mode = decoding(load_model(weights / "best.safetensors").head, info.events == "time")
    tune = {"segments": tune_instance_events, "instances": tune_instance_events, "columns": tune_time_events,
            "regions": tune_box_events}[mode]
    tuned = tune(weights / "best.safetensors", info)
    if tuned is None:
        return None
    store_tuned([weights / "best.safetensors", weights / "last.safetensors"], tuned)
    write_json(run_dir / "detect_tuning.json", tuned)
    settings = ", ".join(f"{k} {tuned[k]}" for k in ("threshold", "peak_threshold", "granularity", "min_duration",
                                                     "merge_gap")
                         if k in tuned)
    log.info("detect settings tuned on the validation split: %s (F1 %.3f)", settings, tuned["f1"])
    return tuned
