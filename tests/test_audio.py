"""Bird sound: spectrograms, the BirdSoundsDenoising reproduction, annotation formats, masks <-> events,
dataset and mixture builders, streaming detection and denoising, event metrics, and bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from unetseg.audio.annotations import Event, format_audacity, format_raven, read_annotations
from unetseg.audio.event_scores import event_scores, frame_scores, sdr, segment_error_rate
from unetseg.audio.masks import events_to_mask, mask_to_events
from unetseg.audio.recordings import audio_info, load_audio
from unetseg.audio.spectrogram import SpectrogramMapping, preset, spectrogram_image
from unetseg.cli import main
from unetseg.core.errors import UnetsegError

from .conftest import shared
from .test_e2e import assert_one_line_error, run
from .test_reliability import _dead_pid


@pytest.fixture
def bsd() -> Path:
    return shared("birdsounds-denoising-example")


@pytest.fixture(scope="module")
def birds() -> Path:
    return shared("bird-audio")


def test_birdsoundsdenoising_image_and_denoised_audio_reproduced(bsd: Path, tmp_path: Path, capsys) -> None:
    """Our image of XC41136.wav matches the dataset's XC41136.png, and masking our STFT with
    XC41136_mask.png gives the dataset's XC41136_denoised.wav. The dataset's MP3 decoder starts 528
    samples after libsndfile's (see shared/notes); 3032 frames span 194,112 samples = 4.044 s."""
    assert audio_info(bsd / "XC41136.wav").format == "MP3"  # an MP3 stream named .wav, read by content
    code, _, err = run(["audio", "spectrogram", "--input", str(bsd / "XC41136.wav"), "--output", str(tmp_path),
                        "--preset", "birdsoundsdenoising", "--start-sample", "528", "--duration", "4.044",
                        "--mask", str(bsd / "XC41136_mask.png"), "--denoise", str(tmp_path / "den.wav")], capsys)
    assert code == 0, err
    ours = np.asarray(Image.open(tmp_path / "XC41136.png"), dtype=np.float64)
    theirs = np.asarray(Image.open(bsd / "XC41136.png").convert("L"), dtype=np.float64)
    assert ours.shape == theirs.shape == (1024, 3032)
    assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] >= 0.99
    assert np.abs(ours - theirs).mean() < 0.5  # grey levels
    ref, sr = sf.read(bsd / "XC41136_denoised.wav")
    den, sr2 = sf.read(tmp_path / "den.wav")
    assert sr == sr2 == 48000 and len(den) == len(ref) == 194112
    # The measure: correlation at lag 0 and the SNR of our audio against theirs.
    assert np.corrcoef(den, ref)[0, 1] >= 0.999
    assert sdr(ref, den) >= 30.0
    mapping = json.loads((tmp_path / "XC41136.json").read_text())
    assert mapping["first_column_s"] == pytest.approx((528 + 64) / 48000)
    assert mapping["row_hz"][0] == pytest.approx(24000 - 46.875) and mapping["row_hz"][511] == 0


def test_spectrogram_mapping_and_mel_axis(birds: Path) -> None:
    y, sr = load_audio(birds / "spinetail" / "spinetail.wav", 22050)
    image, mapping = spectrogram_image(y[: sr * 2], sr, preset("default"))
    assert image.shape[0] == 256 and image.dtype == np.uint8
    assert mapping.row_hz[0] > mapping.row_hz[-1] == 0  # high frequencies on top
    assert mapping.column_time(0) == pytest.approx(256 / sr)
    mel, mel_map = spectrogram_image(y[: sr * 2], sr, preset("default", axis="mel", n_mels=64, fmax=11025.0))
    assert mel.shape == (64, image.shape[1]) and mel_map.row_hz[0] > mel_map.row_hz[-1]


def test_annotation_formats(birds: Path, tmp_path: Path) -> None:
    spinetail = read_annotations(birds / "spinetail" / "spinetail.txt")  # Audacity with frequency lines
    assert len(spinetail) == 18 and {e.label for e in spinetail} == {"SP", "CRER"}
    assert spinetail[0].low == pytest.approx(6441.064453) and spinetail[0].high == pytest.approx(12296.577148)
    finch = read_annotations(birds / "bengalese-finch-gy6or6" / "annotations_generic.csv")  # onset/offset CSV
    assert len(finch) == 601 and finch[0].low is None and finch[0].file.endswith(".cbin")
    plain = tmp_path / "plain.txt"  # Audacity without frequency lines
    plain.write_text("0.5\t1.25\tsong\n2\t2.5\tcall\n")
    assert [(e.begin, e.end, e.label, e.low) for e in read_annotations(plain)] == [(0.5, 1.25, "song", None),
                                                                                   (2.0, 2.5, "call", None)]
    raven = tmp_path / "r.selections.txt"
    raven.write_text(format_raven(spinetail[:3]))
    again = read_annotations(raven)
    assert [(e.label, round(e.begin, 3), round(e.high, 0)) for e in again] == \
           [(e.label, round(e.begin, 3), round(e.high, 0)) for e in spinetail[:3]]
    audacity = tmp_path / "a.txt"
    audacity.write_text(format_audacity(spinetail[:3]))
    assert [round(e.low, 1) for e in read_annotations(audacity)] == [round(e.low, 1) for e in spinetail[:3]]
    species = tmp_path / "species.selections.txt"  # any label column
    species.write_text("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\t"
                       "Species\n1\tSpectrogram 1\t1\t0.1\t0.4\t1000\t4000\tWren\n")
    assert read_annotations(species)[0].label == "Wren"
    bad = tmp_path / "bad.csv"
    bad.write_text("name,when,until\nx,1,2\n")
    with pytest.raises(UnetsegError, match=r"bad\.csv: no onset/offset columns among name, when, until"):
        read_annotations(bad)


def test_boxes_time_bands_energy_and_back_to_events(birds: Path) -> None:
    y, sr = load_audio(birds / "spinetail" / "spinetail.wav", 22050)
    image, mapping = spectrogram_image(y, sr, preset("default"))
    events = read_annotations(birds / "spinetail" / "spinetail.txt")
    boxes = events_to_mask(events, mapping, image.shape, classes=["SP", "CRER"])
    energetic = events_to_mask(events, mapping, image.shape, classes=["SP", "CRER"], image=image)
    assert 0 < (energetic > 0).sum() < (boxes > 0).sum() and ((energetic > 0) <= (boxes > 0)).all()
    band = events_to_mask([Event(1.0, 1.5)], mapping, image.shape)  # time-only: every row
    cols = np.nonzero(band.any(axis=0))[0]
    assert band[:, cols].all() and len(cols) == pytest.approx(0.5 / mapping.column_seconds, abs=2)
    first = events_to_mask(events[:1], mapping, image.shape, classes=["SP", "CRER"])
    (back,) = mask_to_events(first, mapping, ["background", "SP", "CRER"])
    assert back.label == "SP"
    assert abs(back.begin - events[0].begin) <= mapping.column_seconds
    assert abs(back.end - events[0].end) <= mapping.column_seconds
    assert abs(back.low - events[0].low) <= sr / 512  # one row


def test_event_metrics_on_known_cases() -> None:
    ref = [Event(1.0, 2.0, label="a"), Event(3.0, 3.5, label="a"), Event(5.0, 6.0, label="b")]
    est = [Event(1.03, 2.1, label="a"), Event(3.2, 3.5, label="a"), Event(5.0, 6.0, label="a")]
    assert event_scores(ref, est, collar=0.05)["tp"] == 1
    assert event_scores(ref, est, collar=0.05, ignore_labels=True)["tp"] == 2
    frames = frame_scores(ref, est, 7.0, ignore_labels=True)
    assert frames["recall"] == pytest.approx((0.97 + 0.3 + 1.0) / 2.5, abs=0.005)
    seg = segment_error_rate(ref, [], 7.0)
    assert seg["error_rate"] == 1.0 and seg["deletions"] == 3
    t = np.linspace(0, 1, 8000)
    clean = np.sin(2 * np.pi * 440 * t)
    assert sdr(clean, clean + 0.1 * clean) == pytest.approx(20.0, abs=0.01)


def test_dataset_from_recordings_and_annotations(birds: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "finch"
    code, stdout, err = run(["audio", "dataset", "--audio", str(birds / "bengalese-finch-gy6or6" / "wav"),
                             "--annotations", str(birds / "bengalese-finch-gy6or6" / "annotations_generic.csv"),
                             "--output", str(out)], capsys)
    assert code == 0, err
    splits = {}
    for split in ("train", "valid", "test"):
        images = sorted((out / split / "images").glob("*.png"))
        assert images, split
        splits[split] = {p.stem.rsplit("_", 1)[0] for p in images}
        sidecar = json.loads(images[0].with_suffix(".json").read_text())
        assert {"sample_rate", "row_hz", "first_column_s", "column_s", "recording"} <= set(sidecar)
        assert np.asarray(Image.open(out / split / "masks" / images[0].name)).max() in (0, 255)
    assert not (splits["train"] & splits["test"]) and not (splits["train"] & splits["valid"])  # by recording
    masks = [np.asarray(Image.open(p)) for p in (out / "train" / "masks").glob("*.png")]
    assert 0.05 < np.mean([m.mean() / 255 for m in masks]) < 0.8  # syllables cover part of the time
    # One instance per syllable: its columns are the syllable's (the mask's), its band the energetic rows.
    from unetseg.data.images import read_instance_ids
    from unetseg.instances.centres import instance_boxes

    found = 0
    for p in sorted((out / "train" / "masks").glob("*.png"))[:20]:
        mask, ids = np.asarray(Image.open(p)) > 0, read_instance_ids(out / "train" / "instances" / p.name)
        for box in instance_boxes(ids).values():
            found += 1
            cols = slice(int(box.x0), int(box.x1))
            assert mask[:, cols].all(axis=0).all() and 0 < box.y1 - box.y0 <= mask.shape[0]
    assert found > 20
    spin = tmp_path / "spin"
    code, _, err = run(["audio", "dataset", "--audio", str(birds / "spinetail" / "spinetail.wav"), "--output",
                        str(spin), "--classes", "SP,CRER", "--energetic", "--window", "128", "--overlap", "0"],
                       capsys)
    assert code == 0, err
    values = set()
    for p in (spin / "train" / "masks").glob("*.png"):
        values |= set(np.unique(np.asarray(Image.open(p))).tolist())
    assert values == {0, 1, 2}


def test_mixtures_keep_audio_at_the_requested_snr(birds: Path, tmp_path: Path, capsys) -> None:
    soundscapes = shared("soundscapes")
    clean = sorted((birds / "birdsongrec-bird0" / "Wave").glob("*.wav"))[:3]
    noise = sorted(soundscapes.glob("*.wav"))[:3]
    out = tmp_path / "mix"
    code, _, err = run(["audio", "mix", "--clean", *map(str, clean), "--noise", *map(str, noise), "--output",
                        str(out), "--snrs=-5,10"], capsys)
    assert code == 0, err
    noisy = sorted(out.glob("*/audio/*_snr-5_noisy.wav"))
    assert len(noisy) == 3
    for path in noisy:
        y, _ = sf.read(path)
        c, _ = sf.read(str(path).replace("_noisy", "_clean"))
        snr = 10 * np.log10(np.mean(c**2) / np.mean((y - c) ** 2))
        assert snr == pytest.approx(-5.0, abs=0.01)
    sidecars = [json.loads(p.read_text()) for p in out.glob("*/images/*.json")]
    assert {s["snr_db"] for s in sidecars} == {-5.0, 10.0}
    fg = {s: [] for s in (-5.0, 10.0)}
    for p in out.glob("*/masks/*.png"):
        snr = json.loads((p.parent.parent / "images" / p.with_suffix(".json").name).read_text())["snr_db"]
        fg[snr].append(np.asarray(Image.open(p)).mean() / 255)
    assert np.mean(fg[10.0]) > np.mean(fg[-5.0]) > 0  # louder noise hides more of the bird


@pytest.fixture(scope="module")
def finch_model(birds: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finch")
    assert main(["audio", "dataset", "--audio", str(birds / "bengalese-finch-gy6or6" / "wav"), "--annotations",
                 str(birds / "bengalese-finch-gy6or6" / "annotations_generic.csv"), "--output",
                 str(root / "data")]) == 0
    # Column decoding of a time-only model; the instance head is trained in tests/test_instances.py.
    assert main(["train", "--data", str(root / "data"), "--size", "256", "--arch", "classic", "--depth", "3",
                 "--base-width", "8", "--epochs", "1", "--batch-size", "8", "--no-progress", "--workers", "0",
                 "--runs-dir", str(root / "runs"), "--name", "finch", "--no-test", "--instances", "off"]) == 0
    return root / "runs" / "finch" / "weights" / "best.safetensors"


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
    assert_one_line_error(code, err, "inference.json", "already exists")
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


def test_prefetch_keeps_order_raises_errors_and_stops_early() -> None:
    import threading

    from unetseg.core.threads import Prefetch

    assert list(Prefetch(iter(range(100)), depth=3)) == list(range(100))

    def broken():
        yield 1
        raise UnetsegError("x.wav: cannot decode audio")

    with pytest.raises(UnetsegError, match="x.wav"):
        list(Prefetch(broken()))
    made = []

    def endless():
        n = 0
        while True:
            made.append(n)
            yield n
            n += 1

    before = threading.active_count()
    for n in Prefetch(endless(), depth=2):
        if n == 5:
            break
    assert threading.active_count() == before and len(made) <= 5 + 4  # the thread stopped, a few items ahead


# --- bad input -------------------------------------------------------------------------------------------


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


def test_mapping_round_trips_through_json() -> None:
    m = SpectrogramMapping(22050, 1280, 128, 512, [100.0, 50.0, 0.0], preset("default").to_dict())
    assert SpectrogramMapping.from_dict(json.loads(json.dumps(m.to_dict()))) == m


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
    (tmp_path / "ev" / f".r1.selections.txt.unetseg-{_dead_pid()}-x1y2.tmp.txt").write_text("half")
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


def test_spectrogram_datasets_default_to_a_narrow_unet_unless_told() -> None:
    from types import SimpleNamespace

    from unetseg.core.config import Config
    from unetseg.plan import AUDIO_BASE_WIDTH
    from unetseg.training import audio_model_defaults

    audio, images = SimpleNamespace(spectrogram={"n_fft": 512}), SimpleNamespace(spectrogram=None)
    cfg = Config()
    audio_model_defaults(cfg, audio)
    assert cfg.model.base_width == AUDIO_BASE_WIDTH == 8
    told = Config.from_dict({"model": {"base_width": 16}})
    audio_model_defaults(told, audio)
    assert told.model.base_width == 16 and "model.base_width" in told.explicit
    plain = Config()
    audio_model_defaults(plain, images)
    assert plain.model.base_width == 32


# --- time-only (onset/offset) models: per-column decoding ------------------------------------------------


def _column_mapping(rows: int = 4) -> SpectrogramMapping:
    # 1 kHz, hop 10: one column is 10 ms; rows descending like our images
    return SpectrogramMapping(1000, 0, 10, 10, [float(r) for r in range(rows - 1, -1, -1)], {})


def test_columns_to_events_join_gaps_drop_specks_and_vote() -> None:
    from unetseg.audio.masks import columns_to_events

    labels = np.array([0, 0, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 2, 2, 2, 1, 2, 0, 0, 0, 0, 1, 0], np.uint8)
    pooled = np.zeros((3, len(labels)))
    pooled[0] = np.where(labels > 0, 0.2, 0.9)
    names = ["background", "a", "b"]
    events = columns_to_events(labels, pooled, _column_mapping(), names, min_duration=0.02, merge_gap=0.02)
    assert [(round(e.begin, 3), round(e.end, 3), e.label) for e in events] == [(0.02, 0.09, "a"), (0.14, 0.19, "b")]
    assert all(e.low is None and e.high is None and e.score == pytest.approx(0.8) for e in events)
    apart = columns_to_events(labels, pooled, _column_mapping(), names, merge_gap=0.0)
    assert len(apart) == 4  # without a merge gap the split syllable is two, and the speck stays


def test_column_tracker_is_the_same_whatever_the_pieces() -> None:
    from unetseg.audio.events import EventTracker
    from unetseg.audio.settings import EventOptions

    rng = np.random.default_rng(0)
    active = np.repeat(rng.random(60) < 0.4, 5)  # runs of 5 columns
    probs = np.where(active[None], 0.9, 0.1) * np.ones((4, 1)) + rng.normal(0, 0.02, (4, 300))
    options = EventOptions(min_duration=0.02, merge_gap=0.01)
    whole = EventTracker(_column_mapping(), ["background", "call"], options, columns=True)
    whole.push((probs > 0.5).astype(np.uint8), probs)
    pieces = EventTracker(_column_mapping(), ["background", "call"], options, columns=True)
    for a, b in ((0, 7), (7, 123), (123, 124), (124, 300)):
        pieces.push((probs[:, a:b] > 0.5).astype(np.uint8), probs[:, a:b])
    assert whole.finish() == pieces.finish() and len(whole.events) > 5


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


def test_dataset_with_background_noise_copies(birds: Path, tmp_path: Path) -> None:
    songs = tmp_path / "songs"
    songs.mkdir()
    for wav in sorted((birds / "bengalese-finch-gy6or6" / "wav").glob("*.wav"))[:3]:
        (songs / wav.name).symlink_to(wav)
    out = tmp_path / "noisy"
    assert main(["audio", "dataset", "--audio", str(songs), "--annotations",
                 str(birds / "bengalese-finch-gy6or6" / "annotations_generic.csv"), "--output", str(out),
                 "--noise", str(shared("soundscapes")), "--snrs", "5,0"]) == 0
    images = sorted(out.glob("*/images/*.png"))
    clean = [p for p in images if "_snr" not in p.name]
    assert len(images) == 3 * len(clean) and clean
    for p in clean:
        for snr in (5, 0):
            song, start = p.stem.rsplit("_", 1)
            copy = p.with_name(f"{song}_snr+{snr}_{start}.png")
            assert json.loads(copy.with_suffix(".json").read_text())["snr_db"] == snr
            for kind in ("masks", "instances"):  # the clean recording's targets hold for its noisy copies
                a, b = (np.asarray(Image.open(p.parent.parent / kind / f.name)) for f in (p, copy))
                assert np.array_equal(a, b), kind
            assert not np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(copy)))
    assert yaml_load(out / "dataset.yaml")["events"] == "time"
    code = main(["audio", "dataset", "--audio", str(songs), "--annotations",
                 str(birds / "bengalese-finch-gy6or6" / "annotations_generic.csv"), "--output",
                 str(tmp_path / "bad"), "--noise", str(shared("soundscapes")), "--snrs", "5,loud"])
    assert code != 0


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


# --- events a person would draw: grouping, clicks, box-level metric --------------------------------------


def _events_of(mask: np.ndarray, **options: object) -> list[Event]:
    from unetseg.audio.events import EventTracker
    from unetseg.audio.settings import EventOptions

    mapping = SpectrogramMapping(1000, 0, 10, 10, [float(100 * r) for r in range(63, -1, -1)], {})  # 10 ms, 100 Hz
    tracker = EventTracker(mapping, ["background", "a", "b"], EventOptions(**options))
    tracker.push(mask, np.where(mask > 0, 0.9, 0.05)[None].repeat(3, 0))
    return tracker.finish()


def test_events_drop_clicks_and_specks_and_join_split_calls() -> None:
    mask = np.zeros((64, 120), np.uint8)
    mask[20:30, 10:20] = 1  # a call ...
    mask[22:28, 23:33] = 1  # ... split by a 3-column (30 ms) gap: one event
    mask[2:62, 50] = 1  # a broadband click, one column wide: dropped
    mask[5, 60:62] = 1  # a speck of two pixels: dropped
    mask[20:30, 53:63] = 1  # a second call 200 ms after the first ends: its own event
    events = _events_of(mask, granularity="call")
    assert [(round(e.begin, 2), round(e.end, 2)) for e in events] == [(0.1, 0.33), (0.53, 0.63)]
    assert all(e.label == "a" and e.low is not None for e in events)
    syllables = _events_of(mask)  # the default joins only 5 ms gaps: the split call stays two
    assert len(syllables) == 3


def test_harmonics_of_one_call_join_but_a_long_band_does_not_swallow_calls() -> None:
    mask = np.zeros((64, 120), np.uint8)
    mask[40:44, 10:30] = 1  # fundamental ...
    mask[20:24, 11:30] = 1  # ... and its harmonic, 2 kHz higher, at the same time: one event
    mask[58:62, 0:120] = 1  # a steady low band through the whole recording
    mask[5:9, 60:70] = 1  # a short call above it: its own event
    spans = sorted((round(e.begin, 2), round(e.end, 2)) for e in _events_of(mask))
    assert spans == [(0.0, 1.2), (0.1, 0.3), (0.6, 0.7)]


def test_events_of_two_classes_in_overlapping_bands_stay_separate() -> None:
    mask = np.zeros((64, 60), np.uint8)
    mask[20:30, 10:30] = 1
    mask[25:35, 12:28] = 2
    mask[50:60, 32:40] = 1  # same class, 20 ms later but 2 kHz lower: not joined
    events = _events_of(mask, granularity="call")
    assert sorted((e.label, round(e.begin, 2)) for e in events) == [("a", 0.1), ("a", 0.32), ("b", 0.12)]


def test_box_level_event_metric() -> None:
    from unetseg.audio.event_scores import box_iou, box_scores, false_alarms_per_minute

    ref = [Event(1.0, 2.0, 1000, 3000, "x"), Event(5.0, 6.0, 1000, 3000, "x")]
    est = [Event(1.1, 2.0, 1200, 3000, "x"), Event(5.0, 6.0, 5000, 7000, "x"), Event(8.0, 9.0, 100, 200, "x")]
    assert box_iou(ref[0], est[0]) == pytest.approx(0.9 * 1800 / 2000)
    scores = box_scores(ref, est, min_iou=0.3)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 2, 1) and scores["matched_by"] == "box IoU >= 0.3"
    time_only = [Event(1.0, 2.0, label="x")]
    assert box_scores(time_only, est)["matched_by"] == "onset/offset"
    assert false_alarms_per_minute([], est, 30.0) == 6.0


def test_average_precision_ranks_events_by_score() -> None:
    """COCO AP on hand-counted cases: 101 recall points, precision interpolated from the right."""
    from unetseg.audio.event_scores import average_precision

    ref = [Event(1.0, 2.0, 1000, 3000, "x", file="a"), Event(5.0, 6.0, 1000, 3000, "x", file="a"),
           Event(1.0, 2.0, 2000, 4000, "x", file="b")]
    hits = [Event(1.0, 2.0, 1000, 3000, "x", 0.9, file="a"), Event(5.0, 6.0, 1000, 3000, "x", 0.8, file="a")]
    assert average_precision(ref, [*hits, Event(1.0, 2.0, 2000, 4000, "x", 0.7, file="b")]) == {
        "ap": 1.0, "ap50": 1.0, "ap75": 1.0, "ap50_per_category": {"1": 1.0}}
    # Two of three found; a false event ranked below them leaves precision 1 up to recall 2/3 (67 of 101
    # recall points), ranked above them it caps precision at 2/3 there.
    low = average_precision(ref, [*hits, Event(8.0, 9.0, 100, 200, "x", 0.1, file="a")])
    high = average_precision(ref, [*hits, Event(8.0, 9.0, 100, 200, "x", 0.95, file="a")])
    assert low["ap50"] == pytest.approx(67 / 101, abs=1e-4)
    assert high["ap50"] == pytest.approx(67 / 101 * 2 / 3, abs=1e-4)
    # The same times in another band are a miss in time x frequency, a hit against a time-only reference.
    shifted = [Event(1.0, 2.0, 6000, 8000, "x", 0.9, file="a")]
    assert average_precision(ref[:1], shifted)["ap50"] == 0.0
    assert average_precision([Event(1.0, 2.0, label="x", file="a")], shifted)["ap50"] == 1.0
    assert average_precision([], shifted)["ap"] is None and average_precision(ref, [])["ap"] == 0.0
    # Labels must agree unless ignored.
    other = [Event(1.0, 2.0, 1000, 3000, "y", 0.9, file="a")]
    assert average_precision(ref[:1], other)["ap50"] == 0.0
    assert average_precision(ref[:1], other, ignore_labels=True)["ap50"] == 1.0


def test_close_time_gaps_fills_only_short_gaps_in_place() -> None:
    from unetseg.audio.masks import close_time_gaps

    row = np.array([[0, 0, 1, 0, 1, 0, 0, 0, 1, 0, 0]], bool)
    for gap, expected in ((1, "00111000100"), (2, "00111000100"), (3, "00111111100")):
        assert "".join(str(int(v)) for v in close_time_gaps(row, gap)[0]) == expected


def test_tuning_recovers_settings_that_reproduce_the_reference(finch_model: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With probabilities equal to the validation masks, the tuned settings give onset/offset F1 1.0 (the
    engine must see each window's pixels as written: a lookup by the exact pixels)."""
    from unetseg.audio.tuning import tune_time_events
    from unetseg.data.discover import load_dataset
    from unetseg.data.images import read_image, read_mask_raw
    from unetseg.inference import Engine

    info = load_dataset(finch_model.parents[3] / "data")
    truth = {}
    for pair in info.split("valid"):
        pixels = np.round(read_image(pair.image, 1)[:, :, 0] * 255).astype(np.uint8)
        truth[pixels.tobytes()] = info.decoder.decode(read_mask_raw(pair.mask), pair.mask)

    def native(self: Engine, pixels: np.ndarray) -> np.ndarray:
        return np.stack([truth[p.tobytes()][None].astype(np.float32) * 0.8 + 0.1 for p in pixels])

    monkeypatch.setattr(Engine, "native", native)
    tuned = tune_time_events(finch_model, info)
    assert tuned is not None and tuned["f1"] == 1.0 and tuned["reference_events"] > 20


@pytest.mark.slow
@pytest.mark.parametrize("instances", ["off", "on"])
def test_box_annotated_model_tunes_its_granularity(birds: Path, tmp_path: Path, instances: str) -> None:
    """Without the head: threshold and granularity of region decoding; with it: the peak threshold."""
    from unetseg.audio.detect import Detector
    from unetseg.audio.settings import GRANULARITY
    from unetseg.models.modelfile import load_model

    spinetail = birds / "spinetail"
    assert main(["audio", "dataset", "--audio", str(spinetail / "spinetail.wav"), "--annotations",
                 str(spinetail / "spinetail.txt"), "--output", str(tmp_path / "sp")]) == 0
    assert yaml_load(tmp_path / "sp" / "dataset.yaml")["events"] == "box"
    assert main(["train", "--data", str(tmp_path / "sp"), "--epochs", "1", "--base-width", "8", "--depth", "2",
                 "--no-progress", "--workers", "0", "--runs-dir", str(tmp_path / "runs"), "--name", "sp",
                 "--no-test", "--instances", instances]) == 0
    model = load_model(tmp_path / "runs" / "sp" / "weights" / "best.safetensors")
    tuned = model.meta["detect"]
    assert model.head == (instances == "on") and ("peak_threshold" in tuned) == model.head
    assert tuned["granularity"] in GRANULARITY and tuned["metric"] == "box F1 (IoU >= 0.3)"
    assert tuned["reference_events"] > 0 and 0 <= tuned["f1"] <= 1
    detector = Detector(model)
    assert not detector.columns and detector.events.granularity == tuned["granularity"]
    assert detector.threshold == tuned["threshold"]
    assert detector.describe()["decoding"] == ("instances" if model.head else "regions")
    if model.head:
        assert detector.events.peak_threshold == tuned["peak_threshold"]


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


def test_behind_keeps_order_and_raises_the_workers_error() -> None:
    from unetseg.core.threads import Behind

    seen: list[int] = []
    behind = Behind(seen.append)
    for i in range(50):
        behind.put(i)
    behind.finish()
    assert seen == list(range(50))

    def fails(item: int) -> None:
        if item == 3:
            raise UnetsegError("events: broken")

    behind = Behind(fails)
    with pytest.raises(UnetsegError, match="broken"):
        for i in range(10):
            behind.put(i)
        behind.finish()


def test_event_metrics_by_intervals_equal_the_per_frame_and_dense_definitions() -> None:
    """Issue 28: frame and segment scores are computed on runs of frames and the matchings on candidate pairs
    (an event ending at 1e9 s, or 20,000 x 20,000 events, no longer allocate GBs); on random tables they equal
    the per-frame arrays and the dense assignment they replace."""
    import math

    from scipy.optimize import linear_sum_assignment

    from unetseg.audio.event_scores import box_iou, box_scores, event_scores, frame_scores, segment_error_rate

    def frames(events: list, labels: list, step: float, n: int) -> np.ndarray:
        act = np.zeros((len(labels), n), bool)
        for e in events:
            a, b = int(math.floor(e.begin / step)), int(math.ceil(e.end / step))
            act[labels.index(e.label), max(a, 0):min(b, n)] = True
        return act

    rng = np.random.default_rng(3)
    for _ in range(25):
        def table(k: int) -> list[Event]:
            out = []
            for _ in range(k):
                b, lo = rng.uniform(0, 20), rng.uniform(0, 5000)
                label = str(rng.choice(["a", "b"]))
                out.append(Event(b, b + rng.uniform(0.01, 2), lo, lo + rng.uniform(100, 3000), label))
            return out
        ref = table(int(rng.integers(1, 25)))
        est = [Event(max(0.0, e.begin + rng.normal(0, 0.04)), e.end + rng.normal(0, 0.05) + 0.1, e.low, e.high, e.label)
               for e in ref if rng.random() < 0.8] + table(int(rng.integers(0, 8)))
        labels = sorted({e.label for e in ref + est})
        r, s = frames(ref, labels, 0.01, 2500), frames(est, labels, 0.01, 2500)
        got = frame_scores(ref, est, 25.0)
        assert (got["tp"], got["fp"], got["fn"]) == (int((r & s).sum()), int((~r & s).sum()), int((r & ~s).sum()))
        r, s = frames(ref, labels, 1.0, 25), frames(est, labels, 1.0, 25)
        fn, fp = (r & ~s).sum(axis=0), (~r & s).sum(axis=0)
        seg = segment_error_rate(ref, est, 25.0)
        assert (seg["substitutions"], seg["deletions"], seg["insertions"]) == (
            int(np.minimum(fn, fp).sum()), int(np.maximum(0, fn - fp).sum()), int(np.maximum(0, fp - fn).sum()))
        iou = np.array([[box_iou(a, b) if a.label == b.label else 0.0 for b in est] for a in ref])
        rows, cols = linear_sum_assignment(-np.where(iou >= 0.3, iou, 0))
        assert box_scores(ref, est, 0.3)["tp"] == int((iou[rows, cols] >= 0.3).sum())
        assert event_scores(ref, est, 0.2)["tp"] <= len(ref)
    far = [Event(0.1, 0.3, label="call"), Event(9.99e8, 1e9, label="call")]
    assert frame_scores(far, far, 1e9)["tp"] == 20 + 100_000_000  # runs, not 1e11 frames


def test_sdr_of_identical_audio_is_written_as_valid_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A denoised file equal to the clean one has an infinite SDR: the JSON says null and why, never Infinity."""
    import json

    import soundfile as sf

    from unetseg.cli import main

    y = (0.1 * np.random.default_rng(0).standard_normal(22050)).astype(np.float32)
    for name in ("clean.wav", "den.wav"):
        sf.write(tmp_path / name, y, 22050, subtype="FLOAT")
    assert main(["audio", "evaluate", "--clean", str(tmp_path / "clean.wav"), "--denoised", str(tmp_path / "den.wav"),
                 "--output", str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert report["sdr_db"] is None and "no distortion" in report["sdr_note"]
