"""Events a person would draw: detect's grouping on real recordings, before and after.

With the bird-mixture model (benchmarks/birdsound.py; pass --model):
1. Spinetail (../shared/data/bird-audio/spinetail, 19.5 s, 18 Audacity boxes of two species): events found
   and box-level F1 (time x frequency IoU >= 0.3, labels ignored: the model has one class).
2. The bird-mixture test recordings (noisy, every SNR): events against the songs' annotated syllables
   (the clean songs' onset/offset CSVs hold for their mixtures): onset/offset F1 within +-50 ms.
3. The 14 shared soundscapes as noise only: events per minute (they hold some real bird sound too).

"before" is detect without grouping (every region an event: no speck or click removal, no joining across
frequency, 10 ms merge gap and minimum duration, as detect did); "after" its defaults (--granularity
syllable, harmonics joined) and the call and song presets.

    .venv/bin/python benchmarks/events.py --model runs/bench-birdsound-plan/unetseg/weights/best.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from unetseg.audio.annotations import events_by_file, read_annotations
from unetseg.audio.detect import Detector
from unetseg.audio.event_scores import box_scores, event_scores
from unetseg.audio.settings import EventOptions
from unetseg.cli.common import configure_logging
from unetseg.core.fileio import write_json
from unetseg.models.modelfile import load_model
from unetseg.plan import machine

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETTINGS = {
    "before (no grouping)": EventOptions(min_duration=0.01, merge_gap=0.01, freq_tolerance=0.0, min_pixels=1,
                                         click_seconds=0.0, simultaneous=0.0),
    "after: syllable (default)": EventOptions(),
    "after: call": EventOptions(granularity="call"),
    "after: song": EventOptions(granularity="song"),
}


def _songs() -> dict[str, list]:
    out: dict[str, list] = {}
    for csv in sorted((SHARED / "bird-audio").glob("*/annotations_generic.csv")):
        out.update({Path(k).stem: v for k, v in events_by_file(read_annotations(csv)).items() if k})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="the bird-mixture model (benchmarks/birdsound.py)")
    p.add_argument("--mix", help="the mixture dataset it was trained on [default: <model's run>/../mix]")
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "events.json"))
    args = p.parse_args()
    configure_logging()
    model = load_model(args.model)
    mix = Path(args.mix) if args.mix else Path(args.model).resolve().parents[2] / "mix"
    detectors = {name: Detector(model, events=options) for name, options in SETTINGS.items()}

    spinetail = SHARED / "bird-audio" / "spinetail"
    reference = read_annotations(spinetail / "spinetail.txt")
    results: dict = {"spinetail": {"reference_boxes": len(reference)}}
    for name, detector in detectors.items():
        events = detector.run(spinetail / "spinetail.wav").events
        scores = box_scores(reference, events, 0.3, ignore_labels=True)
        results["spinetail"][name] = {"events": len(events), "box_f1": scores["f1"],
                                      "box_precision": scores["precision"], "box_recall": scores["recall"]}

    songs = _songs()
    mixtures = sorted((mix / "test" / "audio").glob("*_noisy.wav"))
    results["mixtures"] = {"recordings": len(mixtures)}
    for name, detector in detectors.items():
        by_snr: dict[str, list[int]] = {}
        for wav in mixtures:
            song, snr = wav.name.rsplit("_snr", 1)
            snr = snr.split("_")[0] + " dB"
            scores = event_scores(songs[song], detector.run(wav).events, collar=0.05, offset_ratio=0.0,
                                  ignore_labels=True)
            counts = by_snr.setdefault(snr, [0, 0, 0])
            for i, k in enumerate(("tp", "fp", "fn")):
                counts[i] += int(scores[k])
        total = np.sum(list(by_snr.values()), axis=0)
        results["mixtures"][name] = {
            "onset_offset_f1_50ms": round(2 * total[0] / max(2 * total[0] + total[1] + total[2], 1), 4),
            "by_snr": {s: round(2 * c[0] / max(2 * c[0] + c[1] + c[2], 1), 4) for s, c in sorted(by_snr.items())},
            "found": int(total[0] + total[1]), "reference": int(total[0] + total[2])}

    soundscapes = sorted((SHARED / "soundscapes").glob("*.wav"))
    results["soundscapes"] = {}
    for name, detector in detectors.items():
        per = {}
        for wav in soundscapes:
            r = detector.run(wav)
            per[wav.stem] = round(len(r.events) / (r.duration / 60), 1)
        results["soundscapes"][name] = {"events_per_minute_mean": round(float(np.mean(list(per.values()))), 1),
                                        "events_per_minute_max": max(per.values()), "per_recording": per}
    report = {"benchmark": "events", "command": f"python benchmarks/events.py --model {args.model}",
              "machine": {**machine(), "cpu_count": os.cpu_count()}, "model": str(args.model),
              "settings": {k: v.resolved().__dict__ for k, v in SETTINGS.items()}, "results": results}
    write_json(args.output, report)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
