"""Tests of the built-in call prior (``src/unetseg/audio/prior``): the shipped file loads as ``builtin``, its
card keeps the benchmark's recordings out of its training data, and it finds synthetic calls in noise with no
training (zero-shot)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

from tests.fixtures import run, shared
from unetseg.audio.annotations import events_by_file, read_annotations
from unetseg.audio.event_scores import box_scores
from unetseg.audio.settings import PRIOR_FILE
from unetseg.audio.spectrogram import PRESETS
from unetseg.models.modelfile import load_model

ROOT = Path(__file__).resolve().parents[2]
F1_ZERO_SHOT = 0.5  # box F1 of the shipped prior on these two recordings, as measured when it was built: 0.69


def test_the_prior_loads_as_builtin_on_its_own_spectrogram() -> None:
    loaded = load_model("builtin")
    assert loaded.path == PRIOR_FILE and PRIOR_FILE.stat().st_size < 8 << 20  # a few MB in the package
    assert loaded.meta["model"]["input_norm"] == "band" and loaded.meta["model"]["instances"] == "on"
    assert loaded.meta["spectrogram"] == PRESETS["prior"].to_dict() and loaded.meta["classes"] == ["background", "call"]
    assert (PRIOR_FILE.parent / "MODEL_CARD.md").is_file()


def test_no_recording_the_few_shot_benchmark_scores_trained_the_prior() -> None:
    card = json.loads((PRIOR_FILE.parent / "calls.json").read_text())
    spec = importlib.util.spec_from_file_location("fewshot", ROOT / "benchmarks" / "fewshot.py")
    assert spec and spec.loader
    fewshot = importlib.util.module_from_spec(spec)
    sys.modules["fewshot"] = fewshot  # its dataclasses look their module up
    try:
        spec.loader.exec_module(fewshot)
    finally:
        del sys.modules["fewshot"]
    data = shared("bat-calls-whombat").parent
    trained = {data / p for p in card["training_recordings"]["real"]}
    assert trained and all(p.is_file() for p in trained)  # the card names real files of ../shared/data
    scored = {t.wav for t in [*fewshot.bat_tasks(), *fewshot.spinetail_tasks(), *fewshot.field_tasks(),
                              *fewshot.finch_tasks(10)]}
    assert len(scored) >= 20 and not trained & scored


def test_zero_shot_detect_finds_synthetic_calls_in_noise(tmp_path: Path, capsys) -> None:
    code, _, err = run(["audio", "synth", "--output", str(tmp_path / "synth"), "--count", "2", "--rate", "48000",
                        "--seconds", "8", "--seed", "7"], capsys)
    assert code == 0, err
    code, _, err = run(["audio", "detect", "--model", "builtin", "--input", str(tmp_path / "synth"), "--output",
                        str(tmp_path / "found")], capsys)
    assert code == 0, err
    found = {Path(k).stem: v for k, v in events_by_file(read_annotations(tmp_path / "found" / "events.csv")).items()}
    tp = fp = fn = 0
    for table in sorted((tmp_path / "synth").glob("*.selections.txt")):
        truth = read_annotations(table)
        scores = box_scores(truth, found.get(table.name.removesuffix(".selections.txt"), []), ignore_labels=True)
        tp, fp, fn = tp + scores["tp"], fp + scores["fp"], fn + scores["fn"]
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    assert f1 >= F1_ZERO_SHOT, (tp, fp, fn)

