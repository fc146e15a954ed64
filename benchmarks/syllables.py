"""Finch syllables in real soundscapes: onset/offset F1 of ``audio detect`` from the plain commands.

1. Songs: annotated Bengalese finch songs from ../shared/data/bird-audio (gy6or6: 10 songs; birdsongrec
   Bird0: 20 songs), onset/offset CSVs; backgrounds: the 14 shared soundscapes.
2. ``unetseg audio dataset --audio SONGS --annotations CSV --noise SOUNDSCAPES --snrs 10,5,0``: spectrogram
   windows of every song, clean and mixed at +10, +5 and 0 dB, split by song (and backgrounds by recording).
3. ``unetseg train --data DATASET --max-time MIN --instances off``: nothing else given (the training plan
   chooses the rest; time-only annotations make detect decode per column, with settings tuned on the
   validation split; the instance head is benchmarks/instances.py's).
4. The test songs, clean and mixed with test-split backgrounds at +10, +5 and 0 dB, through ``audio
   detect`` with its defaults; onset and offset both within +-20 ms (and +-50 ms) of a reference syllable,
   one-to-one, labels ignored; the syllable count error. Beside it, the same model decoded as 2-D regions
   (what detect did before per-column decoding).

    .venv/bin/python benchmarks/syllables.py --minutes 12
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from unetseg.audio.annotations import events_by_file, read_annotations
from unetseg.audio.datasets import _noise_stream, mix_at_snr
from unetseg.audio.detect import Detector
from unetseg.audio.event_scores import event_scores
from unetseg.audio.recordings import load_audio
from unetseg.audio.splits import split_recordings
from unetseg.cli import main as cli
from unetseg.cli.common import configure_logging
from unetseg.core.fileio import new_run_dir, write_json
from unetseg.models.modelfile import load_model
from unetseg.plan import machine

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SNRS = (10.0, 5.0, 0.0)
SETS = {"gy6or6": ("bengalese-finch-gy6or6", "wav"), "bird0": ("birdsongrec-bird0", "Wave")}


def test_recordings(dataset: Path) -> set[str]:
    """Paths of the songs the dataset put in its test split (from the window sidecars)."""
    return {json.loads(p.read_text())["recording"] for p in (dataset / "test" / "images").glob("*.json")}


def link_songs(work: Path) -> dict[str, list]:
    """Both song sets linked into ``work/songs`` with one annotation table (``work/annotations.csv``); the
    reference syllables of each song by stem."""
    songs = work / "songs"
    songs.mkdir()
    references: dict[str, list] = {}
    for folder, wavs in SETS.values():  # one folder of songs, one annotation table for both sets
        table = events_by_file(read_annotations(SHARED / "bird-audio" / folder / "annotations_generic.csv"))
        stems = {Path(k).stem: v for k, v in table.items() if k}
        for wav in sorted((SHARED / "bird-audio" / folder / wavs).glob("*.wav")):
            if wav.stem in stems:
                (songs / wav.name).symlink_to(wav)
                references[wav.stem] = stems[wav.stem]
    rows = ["label,onset_s,offset_s,file"] + [f"{e.label},{e.begin},{e.end},{stem}.wav"
                                              for stem, evs in references.items() for e in evs]
    (work / "annotations.csv").write_text("\n".join(rows) + "\n")
    return references


def dataset_and_training(work: Path, minutes: float, *train_flags: str) -> tuple[float, float]:
    """``audio dataset`` of the linked songs with soundscape copies at ``SNRS``, then ``train --max-time
    MINUTES`` into ``work/runs/syllables``; the seconds each took."""
    t0 = time.perf_counter()
    assert cli(["audio", "dataset", "--audio", str(work / "songs"), "--annotations", str(work / "annotations.csv"),
                "--output", str(work / "dataset"), "--noise", str(SHARED / "soundscapes"), "--snrs",
                ",".join(f"{s:g}" for s in SNRS)]) == 0
    dataset_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert cli(["train", "--data", str(work / "dataset"), "--max-time", f"{minutes:g}", "--runs-dir",
                str(work / "runs"), "--name", "syllables", "--no-progress", *train_flags]) == 0
    return dataset_s, time.perf_counter() - t0


def test_mixtures(work: Path, noise: Path) -> list[tuple[str, str, Path]]:
    """(condition, song stem, recording) of every test song, clean and mixed with test-split backgrounds at
    each SNR (written to ``work/test_audio``)."""
    noise_files = sorted(noise.glob("*.wav"))
    noise_split = split_recordings([f.stem for f in noise_files], 1, 0.15, 0.15)  # as audio dataset (seed + 1)
    pool = [f for f in noise_files if noise_split[f.stem] == "test"]
    rng, cache = np.random.default_rng(0), {}
    mixtures = work / "test_audio"
    mixtures.mkdir()
    out = []
    for song in sorted(test_recordings(work / "dataset")):
        stem = Path(song).stem
        y, sr = load_audio(song)
        for snr in (None, *SNRS):
            path = Path(song)
            if snr is not None:
                background, _ = _noise_stream(pool, sr, len(y), rng, cache)
                _, _, noisy = mix_at_snr(y, background, snr)
                path = mixtures / f"{stem}_snr{snr:+g}.wav"
                sf.write(path, noisy.astype(np.float32), sr, subtype="FLOAT")
            out.append(("clean" if snr is None else f"{snr:+g} dB", stem, path))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=12.0, help="training budget")
    p.add_argument("--work", default=str(ROOT / "runs" / "bench-syllables"))
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "syllables.json"))
    args = p.parse_args()
    configure_logging()
    work = new_run_dir(Path(args.work).parent, Path(args.work).name)
    references = link_songs(work)
    noise = SHARED / "soundscapes"
    # Without the instance head: this benchmark measures column and region decoding (instances.py the head).
    dataset_s, train_s = dataset_and_training(work, args.minutes, "--instances", "off")
    run = work / "runs" / "syllables"
    model = load_model(run / "weights" / "best.safetensors")

    detectors = {"columns": Detector(model), "regions": Detector(model)}
    detectors["regions"].columns = False  # 2-D connected regions, as detect decoded before
    found: dict[str, dict[str, list]] = {d: {} for d in detectors}
    refs: dict[str, list] = {}
    for key, stem, path in test_mixtures(work, noise):
        refs.setdefault(key, []).append(references[stem])
        for name, detector in detectors.items():
            found[name].setdefault(key, []).append(detector.run(path).events)

    def score(collar: float, key: str, name: str) -> dict:
        tp = fp = fn = 0
        for ref, est in zip(refs[key], found[name][key], strict=True):
            s = event_scores(ref, est, collar=collar, offset_ratio=0.0, ignore_labels=True)
            tp, fp, fn = tp + s["tp"], fp + s["fp"], fn + s["fn"]
        n_ref, n_est = sum(map(len, refs[key])), sum(map(len, found[name][key]))
        return {"f1": round(2 * tp / max(2 * tp + fp + fn, 1), 4), "precision": round(tp / max(tp + fp, 1), 4),
                "recall": round(tp / max(tp + fn, 1), 4), "reference": n_ref, "found": n_est,
                "count_error": round((n_est - n_ref) / max(n_ref, 1), 4)}

    results = {name: {key: {"20 ms": score(0.02, key, name), "50 ms": score(0.05, key, name)} for key in refs}
               for name in detectors}
    metrics = json.loads((run / "test" / "metrics.json").read_text()) if (run / "test" / "metrics.json").is_file() \
        else {}
    report = {
        "benchmark": "syllables",
        "command": f"python benchmarks/syllables.py --minutes {args.minutes:g}",
        "machine": {**machine(), "cpu_count": os.cpu_count()},
        "data": {"songs": len(references), "test_songs": len(refs["clean"]), "snrs_db": ["clean", *SNRS],
                 "reference_syllables_per_condition": sum(map(len, refs["clean"]))},
        "budget_minutes": args.minutes, "dataset_seconds": round(dataset_s, 1), "train_seconds": round(train_s, 1),
        "test_pixel_iou": metrics.get("iou"),
        "tuned": json.loads((run / "detect_tuning.json").read_text()) if (run / "detect_tuning.json").is_file()
        else None,
        "plan": {k: v["value"] for k, v in json.loads((run / "plan.json").read_text())["choices"].items()},
        "results": results,
    }
    write_json(args.output, report)
    print(json.dumps(report["results"], indent=2))
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
