"""The page's pure functions (``static/rle.js``, ``static/review/geometry.js``), run in Node as the browser runs
them: ES modules imported as they are, no build step."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

STATIC = Path(__file__).resolve().parents[2] / "src" / "unetseg" / "serve" / "static"


def node(script: str) -> object:
    """Run ``script`` (an ES module that prints one JSON value) in Node; its printed value."""
    exe = shutil.which("node")
    if exe is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("node is missing; CI must provide it (.ci/apt-packages.txt)")
        pytest.skip("node not available")
    out = subprocess.run([exe, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def module(name: str) -> str:
    return (STATIC / name).as_uri()


def test_rle_decodes_as_pycocotools_encodes() -> None:
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    masks = [rng.random((37, 53)) > 0.7, np.zeros((5, 4), bool), np.ones((3, 300), bool)]
    masks[1][2, 3] = True
    encoded = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]
    rles = [{"size": [int(v) for v in e["size"]], "counts": e["counts"].decode("ascii")} for e in encoded]
    got = node(f"import {{ rlePixels }} from '{module('rle.js')}';\n"
               f"console.log(JSON.stringify({json.dumps(rles)}.map((r) => Array.from(rlePixels(r)))));")
    for m, pixels in zip(masks, got, strict=True):
        assert sorted(pixels) == np.flatnonzero(m).tolist()  # row-major indices of the set pixels (runs go by column)


def test_review_geometry() -> None:
    rows = [10000.0, 7500.0, 5000.0, 2500.0, 0.0]  # top row first
    script = f"""
import * as g from '{module('review/geometry.js')}';
const rows = {json.dumps(rows)}, view = {{ pxs: 100, rows, height: 320 }};
const events = [{{ id: 'a', begin: 1, end: 2, low: 2500, high: 7500, state: 'unreviewed' }},
                {{ id: 'b', begin: 0.5, end: 0.6, low: null, high: null, state: 'deleted' }},
                {{ id: 'c', begin: 3, end: 4, low: null, high: null, state: 'accepted' }}];
const box = g.boxOf(events[0], view);
const at = (x, y) => {{ const h = g.hit(events, null, x, y, view); return h && [h.event.id, h.mode]; }};
console.log(JSON.stringify({{
  centres: rows.map((hz) => g.yOf(hz, rows)), back: [32, 96, 160, 224, 288].map((y) => g.hzOf(y, rows)),
  box, whole: g.boxOf(events[2], view), order: g.sortEvents(events).map((e) => e.id),
  middle: at(150, (box.y0 + box.y1) / 2), left: at(box.x0 + 1, (box.y0 + box.y1) / 2),
  corner: at(box.x1, box.y1), deleted: at(55, 100), nothing: at(250, 100),
  steps: [g.niceStep(19.5, 10), g.niceStep(3600, 8), g.niceStep(0.07, 10)],
  clocks: [g.clock(5, 1, 19.5), g.clock(75.5, 0.5, 3600), g.clock(1800, 60, 3600)], rounded: g.round(1.23456, 2),
  times: [g.xOf(2.5, 100), g.tOf(250, 100)],
}}));
"""
    got = node(script)
    assert got["centres"] == [0, 96, 160, 224, 320]  # the top and bottom rows clamp to the edges
    assert got["back"] == [10000.0, 7500.0, 5000.0, 2500.0, 0.0]  # each row's centre reads back its frequency
    assert got["box"] == {"x0": 100, "x1": 200, "y0": 96, "y1": 224}
    assert got["whole"] == {"x0": 300, "x1": 400, "y0": 0, "y1": 320}  # no band: the whole height
    assert got["order"] == ["b", "a", "c"]
    assert got["middle"] == ["a", "move"] and got["left"] == ["a", "l"] and got["corner"] == ["a", "rb"]
    assert got["deleted"] is None and got["nothing"] is None  # a deleted box is not there to grab
    assert got["steps"] == [2, 500, 0.01]
    assert got["clocks"] == ["5 s", "1:15.5", "30:00"]
    assert got["rounded"] == 1.23 and got["times"] == [250, 2.5]
