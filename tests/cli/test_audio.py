"""Tests of ``unetseg.cli.audio``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.fixtures import audio_model, run, write_wav
from unetseg.audio.annotations import read_annotations
from unetseg.audio.review import Review
from unetseg.cli import main


def test_sdr_of_identical_audio_is_written_as_valid_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A denoised file equal to the clean one has an infinite SDR: the JSON says null and why, never Infinity."""
    import json

    from unetseg.cli import main

    y = (0.1 * np.random.default_rng(0).standard_normal(22050)).astype(np.float32)
    for name in ("clean.wav", "den.wav"):
        sf.write(tmp_path / name, y, 22050, subtype="FLOAT")
    assert main(["audio", "evaluate", "--clean", str(tmp_path / "clean.wav"), "--denoised", str(tmp_path / "den.wav"),
                 "--output", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert report["sdr_db"] is None and "no distortion" in report["sdr_note"]


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


def test_detect_review_then_dataset_from_the_review(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:

    model = audio_model(tmp_path, bias=3.0)
    rec = write_wav(tmp_path / "rec.wav", 4.0)
    assert main(["audio", "detect", "--model", str(model), "--input", str(rec), "--output", str(tmp_path / "out"),
                 "--review", "--backend", "torch"]) == 0
    folder = tmp_path / "out" / "review" / "rec"
    review = Review.load(folder)
    # the recording is a file inside the review (a hard link: no copy on one disk), its source recorded
    assert review.recording == folder / "rec.wav" and review.recording.read_bytes() == rec.read_bytes()
    assert review.data["source"] == str(rec.resolve()) and review.events
    review.change(review.events[0]["id"], {"state": "accepted"})
    # a second detect into the same output keeps the person's review
    assert main(["audio", "detect", "--model", str(model), "--input", str(rec), "--output", str(tmp_path / "out"),
                 "--review", "--overwrite", "--backend", "torch"]) == 0
    assert Review.load(folder).counts()["accepted"] == 1
    assert main(["audio", "dataset", "--review", str(tmp_path / "out" / "review"), "--output",
                 str(tmp_path / "data"), "--window", "64", "--overlap", "0"]) == 0
    assert any((tmp_path / "data" / "train" / "masks").iterdir())
    from unetseg.cli.images import _dataset_of_reviews
    from unetseg.core.config import Config

    cfg = Config()
    cfg.train.runs_dir = str(tmp_path / "runs")
    data = _dataset_of_reviews(str(tmp_path / "out" / "review"), {}, cfg)  # what train --data does with a review
    assert data == str(tmp_path / "runs" / "out-review-data" / "dataset") and cfg.train.name == "out-review"
    assert _dataset_of_reviews(str(tmp_path / "data"), {}, cfg) == str(tmp_path / "data")  # not a review
    assert main(["audio", "dataset", "--output", str(tmp_path / "d2")]) != 0
    assert "error: give --audio (with --annotations) or --review" in capsys.readouterr().err
    assert not (tmp_path / "d2").exists()


@pytest.mark.slow
def test_detect_review_train_detect_loop_on_spinetail(tmp_path: Path) -> None:
    """detect -> review (a person's corrections: the detections deleted, the reference boxes drawn) -> train on
    the review folder -> detect with the new model, without leaving unetseg."""

    from tests.fixtures import shared

    folder = shared("bird-audio") / "spinetail"
    model = audio_model(tmp_path, bias=3.0)
    assert main(["audio", "detect", "--model", str(model), "--input", str(folder / "spinetail.wav"), "--output",
                 str(tmp_path / "out"), "--review", "--backend", "torch"]) == 0
    review = Review.load(tmp_path / "out" / "review" / "spinetail")
    for e in list(review.events):
        review.change(e["id"], {"state": "deleted"})
    for e in read_annotations(folder / "spinetail.txt"):
        review.add({"begin": e.begin, "end": e.end, "low": e.low, "high": e.high, "label": "bird"})
    assert main(["train", "--data", str(tmp_path / "out" / "review"), "--epochs", "1", "--base-width", "8", "--depth",
                 "2", "--no-progress", "--workers", "0", "--runs-dir", str(tmp_path / "runs"), "--name", "reviewed",
                 "--no-test", "--instances", "off"]) == 0
    data = tmp_path / "runs" / "out-review-data" / "dataset"
    assert (data / "dataset.yaml").is_file() and any((data / "train" / "masks").iterdir())
    best = tmp_path / "runs" / "reviewed" / "weights" / "best.safetensors"
    assert main(["audio", "detect", "--model", str(best), "--input", str(folder / "spinetail.wav"), "--output",
                 str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "spinetail.selections.txt").is_file()
    # without model options, the run on the corrections starts from the model that made the review
    assert main(["train", "--data", str(tmp_path / "out" / "review"), "--epochs", "1", "--no-progress", "--workers",
                 "0", "--runs-dir", str(tmp_path / "runs"), "--name", "refined", "--no-test"]) == 0
    plan = json.loads((tmp_path / "runs" / "refined" / "plan.json").read_text())
    assert plan["choices"]["model.base_width"] == {"value": 4, "reason": f"from --init {model}", "set_by": "user"}
