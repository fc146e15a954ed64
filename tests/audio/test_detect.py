"""Tests of ``unetseg.audio.detect``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.fixtures import assert_one_line_error, run
from unetseg.audio.annotations import read_annotations
from unetseg.audio.recordings import load_audio
from unetseg.core.errors import UnetsegError


@pytest.mark.slow
def test_detect_events_and_denoise_then_evaluate(finch_model: Path, birds: Path, tmp_path: Path, capsys) -> None:
    wav = birds / "bengalese-finch-gy6or6" / "wav" / "gy6or6_baseline_230312_0808.138.wav"
    out = tmp_path / "det"
    code, _, err = run(["audio", "detect", "--model", str(finch_model), "--input", str(wav), "--output", str(out),
                        "--denoise", str(tmp_path / "den.wav"), "--save-mask"], capsys)
    assert code == 0, err
    table = out / f"{wav.stem}.selections.txt"
    header = table.read_text().splitlines()[0].split("\t")
    assert header[:7] == ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)",
                          "High Freq (Hz)"]
    events = read_annotations(table)
    clean, sr = load_audio(wav, 22050)
    duration = len(clean) / sr
    assert events and all(0 <= e.begin < e.end <= duration + 0.01 for e in events)
    assert all(e.score is not None and 0 <= e.score <= 1 and e.label == "call" for e in events)
    den, sr2 = sf.read(tmp_path / "den.wav")
    assert sr2 == sr and abs(len(den) - len(clean)) < 512
    mask = np.asarray(Image.open(out / f"{wav.stem}.mask.png"))
    assert mask.shape[0] == 256 and set(np.unique(mask)) <= {0, 255}
    code, _, err = run(["audio", "detect", "--model", str(finch_model), "--input", str(wav), "--output", str(out),
                        "--format", "csv"], capsys)  # the folder holds a run: its record and events.csv stay
    assert_one_line_error(code, err, "events.csv", "already exists", "--overwrite")
    for fmt, suffix in (("audacity", ".labels.txt"), ("csv", ".events.csv")):
        code, _, err = run(["audio", "detect", "--model", str(finch_model), "--input", str(wav), "--output",
                            str(tmp_path / fmt), "--format", fmt], capsys)
        assert code == 0, err
        assert len(read_annotations(tmp_path / fmt / f"{wav.stem}{suffix}")) == len(events)
    reference = tmp_path / "ref.csv"
    rows = [e for e in read_annotations(birds / "bengalese-finch-gy6or6" / "annotations_generic.csv")
            if e.file and e.file.startswith(wav.stem)]
    reference.write_text("onset_s,offset_s,label\n" + "".join(f"{e.begin},{e.end},{e.label}\n" for e in rows))
    code, stdout, err = run(["audio", "evaluate", "--reference", str(reference), "--estimate", str(table),
                             "--audio", str(wav), "--ignore-labels", "--clean", str(wav), "--denoised",
                             str(tmp_path / "den.wav")], capsys)
    assert code == 0, err
    report = json.loads(stdout)
    assert {"events", "boxes", "false_alarms_per_minute", "frames", "segments", "sdr_db"} <= set(report)
    assert report["boxes"]["matched_by"] == "onset/offset"  # a time-only reference
    assert report["reference_events"] == len(rows)


@pytest.mark.slow  # 17 s: the fast tier keeps its 3 minutes with room
def test_detection_is_the_same_whatever_the_block_size(finch_model: Path, birds: Path, tmp_path: Path) -> None:
    from unetseg.audio.detect import DetectOptions, detect_recording
    from unetseg.models.modelfile import load_model
    from unetseg.prediction.postprocess import PostProcess

    model = load_model(finch_model)
    wav = birds / "bengalese-finch-gy6or6" / "wav" / "gy6or6_baseline_230312_0813.163.wav"
    small = detect_recording(model, wav, DetectOptions(block_seconds=0.7), postprocess=PostProcess(threshold=0.3),
                             denoise=tmp_path / "a.wav", keep_mask=True)
    whole = detect_recording(model, wav, DetectOptions(block_seconds=600), postprocess=PostProcess(threshold=0.3),
                             denoise=tmp_path / "b.wav", keep_mask=True)
    assert small.events == whole.events and (small.mask == whole.mask).all()
    assert np.array_equal(sf.read(tmp_path / "a.wav")[0], sf.read(tmp_path / "b.wav")[0])


def test_the_float32_front_end_gives_the_float64_events(finch_model: Path, birds: Path, monkeypatch) -> None:
    """The front end's STFT and dB scaling in float32 (twice as fast) give the events of float64: the same count,
    boundaries within one STFT frame, on a finch song and the spinetail recording."""
    import unetseg.audio.detect as detect
    from unetseg.models.modelfile import load_model

    detector = detect.Detector(load_model(finch_model))
    frame = detector.cfg.hop_length / detector.cfg.sample_rate
    for wav in (birds / "bengalese-finch-gy6or6" / "wav" / "gy6or6_baseline_230312_0808.138.wav",
                birds / "spinetail" / "spinetail.wav"):
        fast = detector.run(wav).events
        monkeypatch.setattr(detect, "FRONT_END_DTYPE", np.float64)
        precise = detector.run(wav).events
        monkeypatch.setattr(detect, "FRONT_END_DTYPE", np.float32)
        assert fast and len(fast) == len(precise), wav.name
        for a, b in zip(fast, precise, strict=True):
            assert abs(a.begin - b.begin) <= frame + 1e-6 and abs(a.end - b.end) <= frame + 1e-6
            assert a.label == b.label


def test_bad_audio_inputs(finch_model: Path, birds: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 22050)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(22050 * 3, np.float32), 22050)
    short = tmp_path / "short.wav"
    sf.write(short, (np.random.default_rng(0).standard_normal(2000) * 0.1).astype(np.float32), 22050)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage")
    det = ["audio", "detect", "--model", str(finch_model), "--output", str(tmp_path / "o"), "--input"]
    code, _, err = run([*det, str(empty)], capsys)
    assert_one_line_error(code, err, "empty.wav", "empty")
    code, _, err = run([*det[:-3], "--output", str(tmp_path / "short"), "--input", str(short)], capsys)
    assert code == 0, err  # shorter than one window: padded, not refused
    code, _, err = run([*det, str(corrupt)], capsys)
    assert_one_line_error(code, err, "corrupt.wav", "not a readable audio file")
    ann = tmp_path / "silent.txt"
    ann.write_text("0.5\t1.0\tcall\n")
    code, _, err = run(["audio", "dataset", "--audio", str(silent), "--output", str(tmp_path / "d1")], capsys)
    assert_one_line_error(code, err, "silent.wav", "silent")
    columns = tmp_path / "cols"
    columns.mkdir()
    (columns / "spinetail.csv").write_text("who,from,to\nSP,0.1,0.2\n")
    code, _, err = run(["audio", "dataset", "--audio", str(birds / "spinetail" / "spinetail.wav"), "--annotations",
                        str(columns), "--output", str(tmp_path / "d2")], capsys)
    assert_one_line_error(code, err, "spinetail.csv", "no onset/offset columns")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "spinetail.txt").write_text("1.0\t2.0\tSP\n25.0\t26.0\tSP\n")
    code, _, err = run(["audio", "dataset", "--audio", str(birds / "spinetail" / "spinetail.wav"), "--annotations",
                        str(outside), "--output", str(tmp_path / "d3")], capsys)
    assert_one_line_error(code, err, "spinetail.wav", "beyond the recording's end")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir()), "detect left partial output"


def test_a_recording_shorter_than_one_window_gives_correctly_timed_events(finch_model: Path, birds: Path,
                                                                          tmp_path: Path) -> None:
    """0.5 s cut from a song: padded to one window, not refused; its events are those found when the same
    0.5 s sits inside 3 s of silence (silence draws as the padding does), at the same times."""
    from unetseg.audio.detect import Detector
    from unetseg.inference import InferenceOptions
    from unetseg.models.modelfile import load_model
    from unetseg.prediction.postprocess import PostProcess

    y, sr = load_audio(birds / "bengalese-finch-gy6or6" / "wav" / "gy6or6_baseline_230312_0808.138.wav", 22050)
    energy = np.convolve(y**2, np.ones(sr // 2), mode="valid")
    start = int(np.argmax(energy))
    clip = y[start:start + sr // 2]
    sf.write(tmp_path / "clip.wav", clip, sr)
    padded = np.zeros(3 * sr, np.float32)
    padded[: len(clip)] = clip
    sf.write(tmp_path / "padded.wav", padded, sr)
    detector = Detector(load_model(finch_model), inference=InferenceOptions(backend="torch"),
                        postprocess=PostProcess(threshold=0.3))
    short = detector.run(tmp_path / "clip.wav", keep_mask=True)
    long = detector.run(tmp_path / "padded.wav", keep_mask=True)
    assert short.duration == pytest.approx(0.5, abs=1e-3)
    assert short.columns == (len(clip) - 512) // 128 + 1 == short.mask.shape[1]
    assert short.events and all(0 <= e.begin < e.end <= 0.5 + 0.01 for e in short.events)
    inside = [e for e in long.events if e.begin < 0.5]
    assert len(short.events) == len(inside)
    for a, b in zip(short.events, inside, strict=True):
        assert abs(a.begin - b.begin) <= 0.012 and abs(min(a.end, 0.5) - min(b.end, 0.5)) <= 0.012


def test_time_only_model_detects_by_columns_with_tuned_settings(finch_model: Path, birds: Path) -> None:
    from unetseg.audio.detect import Detector
    from unetseg.models.modelfile import load_model

    model = load_model(finch_model)
    assert model.meta["events"] == "time"
    tuned = model.meta["detect"]
    assert {"threshold", "min_duration", "merge_gap", "f1"} <= set(tuned) and tuned["tuned_on"] == "valid"
    assert json.loads((finch_model.parents[1] / "detect_tuning.json").read_text()) == tuned
    detector = Detector(model)
    assert detector.columns and detector.describe()["decoding"] == "columns"
    assert detector.events.min_duration == tuned["min_duration"] and detector.threshold == tuned["threshold"]
    events = detector.run(birds / "bengalese-finch-gy6or6" / "wav" / "gy6or6_baseline_230312_0808.138.wav").events
    assert all(e.low is None and e.high is None for e in events)
    assert all(b.begin >= a.end for a, b in zip(events, events[1:], strict=False))  # one event per segment


def test_run_many_gives_each_recordings_own_result_and_raises_a_bad_one_at_its_turn(finch_model: Path, birds: Path,
                                                                                  tmp_path: Path) -> None:
    from unetseg.audio.detect import Detector
    from unetseg.models.modelfile import load_model

    detector = Detector(load_model(finch_model))
    songs = sorted((birds / "bengalese-finch-gy6or6" / "wav").glob("*.wav"))[:3]
    alone = [detector.run(f).events for f in songs]
    together = list(detector.run_many(songs))  # each one's front end started while the one before ran
    assert [p for p, _ in together] == songs and [r.events for _, r in together] == alone
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF0000WAVEjunk")
    seen = []
    with pytest.raises(UnetsegError, match="broken.wav"):
        for path, _ in detector.run_many([songs[0], broken, songs[1]]):
            seen.append(path)
    assert seen == [songs[0]]
