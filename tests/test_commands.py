"""Fast end-to-end runs of the commands the rest of the fast tier does not run: info, export and audio
evaluate, each on tiny data made here (the slow tier runs them on trained models and real recordings)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unetseg.cli import main
from unetseg.data.inputspec import InputSpec
from unetseg.models import create_model
from unetseg.models.modelfile import build_meta, save_model_file

TINY = {"arch": "classic", "encoder": "", "encoder_weights": None, "depth": 2, "base_width": 4,
        "batch_norm": True, "dropout": 0.0, "attention": False}


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    model = create_model(TINY, 1, 1).eval()
    spec = InputSpec(1, (32, 32), "resize", 4, (0.5,), (0.25,))
    meta = build_meta(TINY, ["background", "call"], True, [(0, 0, 0), (255, 0, 0)], spec, 0.5)
    return save_model_file(tmp_path / "tiny.safetensors", model, meta)


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_info_reports_the_model_file(tiny_model: Path, capsys) -> None:
    code, out, err = run(["info", str(tiny_model)], capsys)
    assert code == 0, err
    info = json.loads(out)
    expected = sum(p.numel() for p in create_model(TINY, 1, 1).state_dict().values())
    assert info["classes"] == ["background", "call"] and info["binary"] is True
    assert info["input"]["size"] == [32, 32] and info["parameters"] == expected


def test_export_onnx_matches_torch_and_refuses_to_replace(tiny_model: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "tiny.onnx"
    code, stdout, err = run(["export", "--model", str(tiny_model), "--output", str(out)], capsys)
    assert code == 0, err
    record = json.loads((tmp_path / "tiny.onnx.json").read_text())
    assert record["export"]["format"] == "onnx" and record["export"]["max_abs_diff_vs_torch"] < 1e-4
    assert record["classes"] == ["background", "call"]
    stamp = out.stat().st_mtime_ns
    code, _, err = run(["export", "--model", str(tiny_model), "--output", str(out)], capsys)
    assert code == 2 and "--overwrite" in err and out.stat().st_mtime_ns == stamp


def test_predict_writes_instance_ids(tiny_model: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    from unetseg.core.fileio import write_png

    rng = np.random.default_rng(0)
    for i in range(2):
        write_png(tmp_path / "in" / f"im{i}.png", rng.integers(0, 255, (40, 48), dtype=np.uint8))
    code, _, err = run(["predict", "--model", str(tiny_model), "--input", str(tmp_path / "in"), "--output",
                        str(tmp_path / "out"), "--instances", "--backend", "torch"], capsys)
    assert code == 0, err
    for i in range(2):
        mask = np.asarray(Image.open(tmp_path / "out" / f"im{i}.png"))
        ids = np.asarray(Image.open(tmp_path / "out" / "instances" / f"im{i}.png"))
        assert ids.shape == mask.shape == (40, 48) and ids.dtype == np.uint16
        assert np.array_equal(ids > 0, mask > 0)
        assert ids.max() > 0 and len(np.unique(ids[ids > 0])) == ids.max()  # 1..N, each used


def test_audio_evaluate_scores_tables(tmp_path: Path, capsys) -> None:
    reference = tmp_path / "ref.csv"
    reference.write_text("onset_s,offset_s,low_hz,high_hz,label\n1.0,1.5,2000,4000,a\n3.0,3.2,1000,2000,a\n"
                         "5.0,5.5,3000,6000,a\n")
    estimate = tmp_path / "est.csv"  # the first found exactly, the second 10 ms late, the third missed, one false
    estimate.write_text("onset_s,offset_s,low_hz,high_hz,label\n1.0,1.5,2000,4000,a\n3.01,3.21,1000,2000,a\n"
                        "8.0,8.4,1000,3000,a\n")
    report_path = tmp_path / "report.json"
    code, stdout, err = run(["audio", "evaluate", "--reference", str(reference), "--estimate", str(estimate),
                             "--collar", "0.05", "--output", str(report_path)], capsys)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report == json.loads(stdout)
    assert report["reference_events"] == 3 and report["estimated_events"] == 3
    events = report["events"]
    third = pytest.approx(2 / 3, abs=1e-4)
    assert (events["precision"], events["recall"]) == (third, third)
    assert report["boxes"]["matched_by"] == "box IoU >= 0.3" and report["boxes"]["recall"] == third
    # unscored rows rank in table order: two hits before the false one, so precision is 1 up to recall 2/3
    assert report["average_precision"]["ap50"] == pytest.approx(67 / 101, abs=1e-4)
