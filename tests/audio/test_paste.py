"""Tests of ``unetseg.audio.paste``: a recording's given calls pasted into its own gaps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tests.fixtures import WHISTLE_RATE as SR
from tests.fixtures import whistles
from unetseg.audio.datasets import Labels, Windows, build_annotated_dataset
from unetseg.audio.paste import MARGIN, paste_calls
from unetseg.audio.spectrogram import SpectrogramConfig


def test_pasted_calls_land_in_gaps_with_their_boxes_and_sound(tmp_path: Path) -> None:
    wav, events = whistles(tmp_path / "r.wav", 10.0, [1.0, 2.0, 3.0])
    import soundfile as sf

    y, _ = sf.read(wav)
    out, placed = paste_calls(y, SR, events, 6, np.random.default_rng(0), span_seconds=8.0)
    new = placed[len(events):]
    assert len(new) == 6 and placed[:len(events)] == events
    for e in new:
        assert e.begin >= 0 and e.end <= 8.0 and abs((e.end - e.begin) - 0.2) < 1e-3 and e.low == 2500.0
        others = [o for o in placed if o is not e]
        assert all(e.end + MARGIN <= o.begin or o.end + MARGIN <= e.begin for o in others)  # no overlap
        a, b = int(e.begin * SR), int(e.end * SR)
        assert np.sqrt(np.mean(out[a:b] ** 2)) > 5 * np.sqrt(np.mean(y[a:b] ** 2))  # the call is heard there
    untouched = np.ones(len(y), bool)
    for e in new:
        untouched[int(e.begin * SR) - 1:int(e.end * SR) + 2] = False
    assert np.array_equal(out[untouched], y[untouched].astype(np.float32))  # nothing else changes
    _, crowd = paste_calls(y, SR, events, 1000, np.random.default_rng(1))  # the gaps fill up, then it stops
    assert 3 < len(crowd) < 1000


def test_audio_dataset_paste_adds_copies_whose_masks_hold_the_pasted_calls(tmp_path: Path) -> None:
    wav, events = whistles(tmp_path / "five.wav", 20.0, [1.0, 2.5, 4.0, 5.5, 7.0])
    plain = build_annotated_dataset([wav], {wav: events}, tmp_path / "plain", SpectrogramConfig(), Windows())
    pasted = build_annotated_dataset([wav], {wav: events}, tmp_path / "pasted", SpectrogramConfig(), Windows(),
                                     Labels(paste=2))
    # one recording: split in time; the pasted copies only train, their calls pasted within what trains
    assert pasted.windows["train"] == 3 * plain.windows["train"]
    assert (pasted.windows["valid"], pasted.windows["test"]) == (plain.windows["valid"], plain.windows["test"])
    sides = sorted((tmp_path / "pasted").glob("*/images/five_paste1_*.json"))
    assert sides and all(s.parent.parent.name == "train" for s in sides)
    assert all(json.loads(s.read_text())["pasted"] == 5 for s in sides)
    from PIL import Image

    def foreground(name: str) -> int:
        return sum(int((np.asarray(Image.open(m)) > 0).sum()) for m in (tmp_path / "pasted").glob(f"*/masks/{name}*"))

    assert foreground("five_paste1_") > 1.5 * foreground("five_0")  # twice the calls, about twice the mask
