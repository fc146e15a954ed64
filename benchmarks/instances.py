"""Instances: one box per call, learned (the instance head) against connected components of the same model.

Parts (``--parts``, all by default where their data and peers are installed):

1. ``syllables``: finch songs (../shared/data/bird-audio gy6or6 + birdsongrec Bird0) with onset/offset labels,
   ``unetseg audio dataset --noise ../shared/data/soundscapes --snrs 10,5,0`` (split by song; instance boxes
   from the energetic-band rule of the README), ``unetseg train --max-time MIN`` (the plan turns the head on).
   On the test songs, clean and at each SNR: onset/offset F1 (+-20 ms), and AP@0.5 of the events in time
   (COCO AP of time intervals; the references have no band), for the instance head (``unetseg``) and for
   the same model decoded per column as before (``components``).
2. ``spinetail``: the field recording (18 boxes drawn by a person). A model trained on the boxes of its first
   60 % (cut into 60 % train / the rest of that part valid), tested on the last 40 %: events found, the
   longest event, box F1 at IoU >= 0.3 and 0.5, for the head and for the components of the same model;
   beside them scikit-maad's unsupervised ROIs (``maad.rois.find_rois_cwt``), the classic peer (the
   ``bench`` extra).

    .venv/bin/python benchmarks/instances.py --minutes 12

Writes ``benchmarks/results/instances.json`` (the parts run; a part not run is said so in ``not_run``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from syllables import SHARED, SNRS, link_songs, test_mixtures

from unetseg.audio.annotations import Event, read_annotations
from unetseg.audio.detect import Detector
from unetseg.audio.io import load_audio
from unetseg.audio.metrics import average_precision, box_scores, event_scores
from unetseg.cli import main as cli
from unetseg.cli.common import configure_logging
from unetseg.fileio import new_run_dir, write_json
from unetseg.modelfile import load_model
from unetseg.plan import machine

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("syllables", "spinetail")


def _detectors(model_path: Path) -> dict[str, Detector]:
    """The model decoded by its instance head (``unetseg``) and as before, without it (``components``)."""
    model = load_model(model_path)
    if not model.head:
        raise SystemExit(f"{model_path}: trained without the instance head")
    detectors = {"unetseg": Detector(model), "components": Detector(model)}
    detectors["components"].instances = False
    return detectors


def syllables(work: Path, minutes: float) -> dict:
    references = link_songs(work)
    noise = SHARED / "soundscapes"
    t0 = time.perf_counter()
    assert cli(["audio", "dataset", "--audio", str(work / "songs"), "--annotations", str(work / "annotations.csv"),
                "--output", str(work / "dataset"), "--noise", str(noise), "--snrs", ",".join(f"{s:g}" for s in SNRS)
                ]) == 0
    dataset_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert cli(["train", "--data", str(work / "dataset"), "--max-time", f"{minutes:g}", "--runs-dir",
                str(work / "runs"), "--name", "syllables", "--no-progress"]) == 0
    train_s = time.perf_counter() - t0
    run = work / "runs" / "syllables"
    detectors = _detectors(run / "weights" / "best.safetensors")
    refs: dict[str, list[list[Event]]] = {}
    found: dict[str, dict[str, list[list[Event]]]] = {name: {} for name in detectors}
    for key, stem, path in test_mixtures(work, noise):
        refs.setdefault(key, []).append(references[stem])
        for name, detector in detectors.items():
            found[name].setdefault(key, []).append(detector.run(path).events)

    def scores(key: str, name: str) -> dict:
        tp = fp = fn = 0
        for ref, est in zip(refs[key], found[name][key], strict=True):
            s = event_scores(ref, est, collar=0.02, offset_ratio=0.0, ignore_labels=True)
            tp, fp, fn = tp + s["tp"], fp + s["fp"], fn + s["fn"]
        tagged_ref = [Event(e.begin, e.end, None, None, "syllable", file=str(i))
                      for i, evs in enumerate(refs[key]) for e in evs]
        tagged_est = [Event(e.begin, e.end, e.low, e.high, "syllable", e.score, file=str(i))
                      for i, evs in enumerate(found[name][key]) for e in evs]
        ap = average_precision(tagged_ref, tagged_est, ignore_labels=True)
        return {"f1_20ms": round(2 * tp / max(2 * tp + fp + fn, 1), 4), "precision": round(tp / max(tp + fp, 1), 4),
                "recall": round(tp / max(tp + fn, 1), 4), "ap50": ap["ap50"], "ap": ap["ap"],
                "reference": sum(map(len, refs[key])), "found": sum(map(len, found[name][key]))}

    table = {key: {name: scores(key, name) for name in detectors} for key in refs}
    return {"box_ap50": {k: {n: v[n]["ap50"] for n in v} for k, v in table.items()},
            "f1_20ms": {k: {n: v[n]["f1_20ms"] for n in v} for k, v in table.items()},
            "detail": table, "songs": len(references), "test_songs": len(refs["clean"]),
            "dataset_seconds": round(dataset_s, 1), "train_seconds": round(train_s, 1),
            "tuned": json.loads((run / "detect_tuning.json").read_text())
            if (run / "detect_tuning.json").is_file() else None}


def _box_f1(reference: list[Event], found: list[Event]) -> dict:
    out = {"found": len(found), "longest_s": round(max((e.duration for e in found), default=0.0), 3)}
    for iou in (0.3, 0.5):
        s = box_scores(reference, found, iou, ignore_labels=True)
        out[f"f1_iou{int(iou * 100)}"] = round(float(s["f1"]), 4)
    return out


def _maad_rois(wav: Path, start: float) -> list[Event]:
    """scikit-maad's unsupervised ROIs (continuous wavelet transform detector over the band of the calls, as
    its documentation's example) on the recording from ``start`` s, as events."""
    from maad import rois, sound

    y, sr = sound.load(str(wav))
    y = y[int(start * sr):]
    found = rois.find_rois_cwt(y, sr, flims=(1000, min(12000, sr / 2 - 1)), tlen=0.2, th=1e-4)
    return [Event(float(r.min_t) + start, float(r.max_t) + start, float(r.min_f), float(r.max_f), "call")
            for r in found.itertuples()]


def spinetail(work: Path, minutes: float) -> dict:
    folder = SHARED / "bird-audio" / "spinetail"
    wav, table = folder / "spinetail.wav", read_annotations(folder / "spinetail.txt")
    y, sr = load_audio(wav)
    duration = len(y) / sr
    cut = 0.6 * duration
    train_part, test_events = work / "part", [e for e in table if e.begin >= cut]
    train_part.mkdir()
    # The first 60 % as three recordings (two train, one valid), its boxes as their Raven tables.
    thirds = np.linspace(0, cut, 4)
    for i, (a, b) in enumerate(zip(thirds[:-1], thirds[1:], strict=True)):
        sf.write(train_part / f"part{i}.wav", y[int(a * sr):int(b * sr)].astype(np.float32), sr, subtype="FLOAT")
        rows = ["Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tAnnotation"]
        rows += [f"{k + 1}\tSpectrogram 1\t1\t{e.begin - a:.6f}\t{min(e.end, b) - a:.6f}\t{e.low}\t{e.high}\tcall"
                 for k, e in enumerate(x for x in table if a <= x.begin < b)]
        (train_part / f"part{i}.selections.txt").write_text("\n".join(rows) + "\n")
    test = work / "test.wav"
    sf.write(test, y[int(cut * sr):].astype(np.float32), sr, subtype="FLOAT")
    reference = [Event(e.begin - cut, e.end - cut, e.low, e.high, "call") for e in test_events]
    assert cli(["audio", "dataset", "--audio", str(train_part), "--output", str(work / "dataset"),
                "--window", "128", "--overlap", "96", "--val-fraction", "0.34", "--test-fraction", "0"]) == 0
    assert cli(["train", "--data", str(work / "dataset"), "--max-time", f"{minutes:g}", "--runs-dir",
                str(work / "runs"), "--name", "spinetail", "--no-progress", "--no-test"]) == 0
    detectors = _detectors(work / "runs" / "spinetail" / "weights" / "best.safetensors")
    trained = {name: _box_f1(reference, d.run(test).events) for name, d in detectors.items()}
    out: dict = {"reference_boxes": len(reference), "tested_seconds": round(duration - cut, 3),
                 "longest_reference_s": round(max(e.duration for e in reference), 3), "trained_60": trained}
    try:
        out["maad"] = _box_f1(reference, [Event(e.begin - cut, e.end - cut, e.low, e.high, e.label)
                                          for e in _maad_rois(wav, cut)])
    except ImportError:
        out["maad"] = "not installed (pip install -e '.[bench]')"
    out["box_f1_iou30"] = {"trained_60": trained["unetseg"]["f1_iou30"],
                           "trained_60_components": trained["components"]["f1_iou30"],
                           "maad": out["maad"]["f1_iou30"] if isinstance(out["maad"], dict) else None}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=12.0, help="training budget of each model")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    p.add_argument("--work", default=str(ROOT / "runs" / "bench-instances"))
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "instances.json"))
    args = p.parse_args()
    parts = [x for x in args.parts.split(",") if x]
    if not set(parts) <= set(PARTS):
        raise SystemExit(f"--parts: choose from {', '.join(PARTS)}")
    configure_logging()
    work = new_run_dir(Path(args.work).parent, Path(args.work).name)
    report: dict = {"benchmark": "instances",
                    "command": f"python benchmarks/instances.py --minutes {args.minutes:g} --parts {args.parts}",
                    "machine": {**machine(), "cpu_count": os.cpu_count()}, "budget_minutes": args.minutes,
                    "not_run": [x for x in PARTS if x not in parts]}
    for part in parts:
        folder = work / part
        folder.mkdir()
        report[part] = {"syllables": syllables, "spinetail": spinetail}[part](folder, args.minutes)
        write_json(args.output, report)
        print(json.dumps({part: {k: v for k, v in report[part].items() if k != "detail"}}, indent=2))
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
