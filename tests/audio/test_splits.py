"""Tests of ``unetseg.audio.splits``: a split by recording, a split in time when there are fewer than three
recordings, and the annotated span of a partly annotated recording."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import whistles
from unetseg.audio.annotations import Event
from unetseg.audio.datasets import Windows, build_annotated_dataset
from unetseg.audio.spectrogram import SpectrogramConfig, SpectrogramMapping
from unetseg.audio.splits import TimeSplit, annotated_columns, split_recordings
from unetseg.core.errors import UnetsegError


def _windows(root: Path) -> dict[str, list[tuple[float, float]]]:
    """Each split's windows as (begin, end) seconds of their recording."""
    out: dict[str, list[tuple[float, float]]] = {}
    for split in ("train", "valid", "test"):
        for side in sorted((root / split / "images").glob("*.json")):
            m = json.loads(side.read_text())
            first = m["first_column_s"]
            out.setdefault(split, []).append((first, first + 255 * m["column_s"]))
    return out


def test_three_recordings_split_by_recording_and_fewer_in_time() -> None:
    assert set(split_recordings(["a", "b", "c"], 0, 0.15, 0.15).values()) == {"train", "valid", "test"}
    assert set(split_recordings(["a", "b"], 0, 0.15, 0.15).values()) == {"train"}  # the caller splits in time
    time = TimeSplit(0.2, 0.1)
    assert [time.split_of(a, a + 10, 100) for a in (0, 60, 65, 70, 75, 85, 90)] == \
        ["train", "train", None, "valid", "valid", None, "test"]


def test_the_annotated_span_ends_at_the_last_box() -> None:
    mapping = SpectrogramMapping(1000, 0, 10, 20, [1.0, 0.0], {})  # column j centred at (10 j + 10) ms
    events = [Event(0.1, 0.2, None, None, "a"), Event(0.5, 0.605, None, None, "a")]
    assert annotated_columns(events, mapping, 100, "whole") == 100
    assert annotated_columns(events, mapping, 100, "until-last-box") == 61  # the column holding 0.605 s, and before
    assert annotated_columns([], mapping, 100, "until-last-box") == 0
    assert mapping.column_time(60) - mapping.column_seconds / 2 <= 0.605 <= mapping.column_time(60) + 0.005


def test_one_recording_is_split_in_time_and_no_window_crosses_two_parts(tmp_path: Path, caplog) -> None:
    import logging

    caplog.set_level(logging.INFO)
    wav, events = whistles(tmp_path / "field.wav", 30.0, [1.0 + 2.5 * k for k in range(12)])
    built = build_annotated_dataset([wav], {wav: events}, tmp_path / "ds", SpectrogramConfig(),
                                    Windows(val_fraction=0.2, test_fraction=0.2))
    assert built.windows["train"] and built.windows["valid"] and built.windows["test"]
    assert built.recordings == {"field": "time"}
    spans = _windows(tmp_path / "ds")
    assert max(e for _, e in spans["train"]) <= 0.6 * 30 + 0.05
    assert min(b for b, _ in spans["valid"]) >= 0.6 * 30 - 0.05 and max(e for _, e in spans["valid"]) <= 0.8 * 30 + 0.05
    assert min(b for b, _ in spans["test"]) >= 0.8 * 30 - 0.05
    assert any("split in time" in r.getMessage() for r in caplog.records)


def test_a_partly_annotated_recording_trains_nothing_after_its_last_box(tmp_path: Path) -> None:
    wav, events = whistles(tmp_path / "part.wav", 30.0, [1.0, 3.0, 5.0, 7.0, 9.0])  # calls go on, unannotated
    given = {wav: events}
    whole = build_annotated_dataset([wav], given, tmp_path / "whole", SpectrogramConfig(), Windows())
    part = build_annotated_dataset([wav], given, tmp_path / "part", SpectrogramConfig(),
                                   Windows(annotated="until-last-box"))
    assert sum(part.windows.values()) < sum(whole.windows.values())
    ends = [e for spans in _windows(tmp_path / "part").values() for _, e in spans]
    assert max(ends) <= 9.2 + 0.02  # no window reaches past the end of the last box
    # one box at 1 s: the annotated part (to 1.2 s) is shorter than a window, so it is repeated to fill one
    short = build_annotated_dataset([wav], {wav: events[:1]}, tmp_path / "short", SpectrogramConfig(),
                                    Windows(annotated="until-last-box"))
    assert short.windows == {"train": 1, "valid": 0, "test": 0}
    from PIL import Image

    image = np.asarray(Image.open(next((tmp_path / "short" / "train" / "images").glob("*.png"))))
    mask = np.asarray(Image.open(next((tmp_path / "short" / "train" / "masks").glob("*.png")))) > 0
    span = next(p for p in range(1, 257) if np.array_equal(image[:, p:], image[:, :256 - p]))  # its period
    end = int(np.ceil((events[0].end * 22050 - 256) / 128)) + 1  # the column after the one holding the box's end
    assert image.shape[1] == 256 and span == end < 256
    assert mask[:, :span].any() and np.array_equal(mask[:, span:], mask[:, :256 - span])  # the call, repeated
    with pytest.raises(UnetsegError, match="has no box, so --annotated until-last-box leaves nothing"):
        build_annotated_dataset([wav], {wav: []}, tmp_path / "none", SpectrogramConfig(),
                                Windows(annotated="until-last-box"))
    with pytest.raises(UnetsegError, match="--annotated 'half' is not one of whole, until-last-box"):
        Windows(annotated="half")


def test_few_boxes_in_three_recordings_are_split_in_time() -> None:
    from unetseg.audio.splits import MIN_BOXES, time_split_reason

    assert "2 recording(s)" in time_split_reason(2, 500)
    assert "15 boxes in 3 recordings" in time_split_reason(3, 15)  # five shots each: a third would train
    assert time_split_reason(3, MIN_BOXES) is None
