"""Tests of ``unetseg.audio.runner``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import soundfile as sf

from tests.fixtures import dead_pid, run
from unetseg.audio.recordings import load_audio


@pytest.mark.slow
def test_detect_on_a_folder_loads_and_exports_the_model_once(finch_model: Path, birds: Path, tmp_path: Path,
                                                            capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    import unetseg.inference.graphs as graphs_module

    monkeypatch.setenv("UNETSEG_CACHE", str(tmp_path / "cache"))
    calls = []
    real = graphs_module.export_onnx
    monkeypatch.setattr(graphs_module, "export_onnx", lambda *a, **k: calls.append(1) or real(*a, **k))
    folder = tmp_path / "recs"
    folder.mkdir()
    y, sr = load_audio(birds / "bengalese-finch-gy6or6" / "wav" / "gy6or6_baseline_230312_0808.138.wav", 22050)
    for i in range(3):
        sf.write(folder / f"r{i}.wav", y[i * sr:(i + 2) * sr], sr)
    code, out, err = run(["audio", "detect", "--model", str(finch_model), "--input", str(folder), "--output",
                          str(tmp_path / "ev"), "--backend", "onnxruntime"], capsys)
    assert code == 0, err
    assert len(calls) == 1 and len(re.findall(r"events? in", out)) == 3
    used = json.loads((tmp_path / "ev" / "inference.json").read_text())
    assert used["backend"] == "onnxruntime" and used["inputs"] == 3 and used["window"] == 1024
    # an interrupted folder (one table gone, a temporary file left) is finished by --resume, and only then
    before = {f.name: f.read_bytes() for f in (tmp_path / "ev").glob("*.txt")}
    (tmp_path / "ev" / "r1.selections.txt").unlink()
    (tmp_path / "ev" / f".r1.selections.txt.unetseg-{dead_pid()}-x1y2.tmp.txt").write_text("half")
    base = ["audio", "detect", "--model", str(finch_model), "--input", str(folder), "--output", str(tmp_path / "ev"),
            "--backend", "onnxruntime"]
    code, _, err = run(base, capsys)
    assert code == 2 and "--resume" in err
    code, _, err = run([*base, "--resume", "--min-duration", "0.2"], capsys)
    assert code == 2 and "other options" in err and "events.min_duration" in err
    code, out, err = run([*base, "--resume"], capsys)
    assert code == 0, err
    assert len(re.findall(r"events? in", out)) == 1 and "2 recording(s) done before were skipped" in out
    assert {f.name: f.read_bytes() for f in (tmp_path / "ev").glob("*.txt")} == before
    assert not list((tmp_path / "ev").glob(".*"))
