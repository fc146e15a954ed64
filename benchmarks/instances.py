"""Instances: one box per call, learned (the instance head) against connected components of the same model.

Parts (``--parts``, all by default where their data and peers are installed):

1. ``syllables``: finch songs (../shared/data/bird-audio gy6or6 + birdsongrec Bird0) with onset/offset labels,
   ``unetseg audio dataset --noise ../shared/data/soundscapes --snrs 10,5,0`` (split by song; instance boxes
   from the energetic-band rule of the README), ``unetseg train --max-time MIN`` (the plan turns the head on).
   On the test songs, clean and at each SNR: onset/offset F1 (+-20 ms), and AP@0.5 of the events in time
   (COCO AP of time intervals; the references have no band), for the instance head (``unetseg``) and for
   the same model decoded per column as before (``components``).
2. ``spinetail``: the field recording (18 boxes drawn by a person). A model trained on the boxes of its first
   60 % (cut into three recordings: two train, one valid; spectrogram hop 512 so that 128-column windows
   hold whole calls), tested on the last 40 %: events found, the
   longest event, box F1 at IoU >= 0.3 and 0.5, for the head and for the components of the same model;
   beside them the bird-mixture model of ``benchmarks/birdsound.py`` (no head: its components) on the same
   40 %, and scikit-maad's unsupervised ROIs (``maad.rois.find_rois_cwt``), the classic peer (the
   ``bench`` extra).
3. ``bats``: the six Whombat recordings (375-500 kHz, every call boxed), resampled to 384 kHz; trained on four
   (three train, one valid), tested on the other two (``BAT_TEST``): box AP@0.5 (labels ignored) of the head,
   of the components of the same model, and of batdetect2's pretrained UK detector (detection only, its
   species ignored; every detection down to probability 0.01 ranked by it).
4. ``facades``: coco-facade-mini (train / valid / test as given), every class: ``unetseg train --max-time MIN``
   (COCO instances turn the head on), then ``evaluate`` on test with the head's objects and with connected
   components (``--objects components``); beside them Ultralytics YOLO segmentation (``yolo11n-seg.yaml`` from
   scratch, no pretrained weights offline) trained for the same minutes on the same train/valid images at
   640 px. Mask AP@0.5 of windows and of all classes, all scored by the same pycocotools code.
5. ``speed``: ``audio detect`` on 10 minutes of finch song with the syllables model and with the same network
   less its head, in turns (after ``syllables``): real-time factors and their ratio.

    .venv/bin/python benchmarks/instances.py --minutes 12 --parts syllables,spinetail,bats
    .venv/bin/python benchmarks/instances.py --minutes 10 --parts facades

Writes ``benchmarks/results/instances.json``: each part run replaces its own entry (with its command), so parts
may run apart; a part never run is listed in ``not_run``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from syllables import SHARED, dataset_and_training, link_songs, test_mixtures

from unetseg.audio.annotations import Event, read_annotations
from unetseg.audio.detect import Detector
from unetseg.audio.event_scores import average_precision, box_scores, event_scores
from unetseg.audio.recordings import load_audio
from unetseg.audio.tuning import pooled_f1
from unetseg.cli import main as cli
from unetseg.cli.common import configure_logging
from unetseg.core.fileio import new_run_dir, write_json
from unetseg.models import create_model
from unetseg.models.modelfile import load_model, save_model_file
from unetseg.plan import machine

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("syllables", "spinetail", "bats", "facades", "speed")
BAT_TEST = ("XC824040-Carollia_castanea-2013.01.17-CL00312_A_15", "XC882096-Diclidurus-albus_ind2")


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
    dataset_s, train_s = dataset_and_training(work, minutes)
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
    return {"model": str(run / "weights" / "best.safetensors"),
            "box_ap50": {k: {n: v[n]["ap50"] for n in v} for k, v in table.items()},
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
    # Calls last up to 2.3 s: 23 ms columns (hop 512) put a whole call inside a 128-column (3 s) window.
    assert cli(["audio", "dataset", "--audio", str(train_part), "--output", str(work / "dataset"), "--hop", "512",
                "--window", "128", "--overlap", "120", "--val-fraction", "0.34", "--test-fraction", "0"]) == 0
    assert cli(["train", "--data", str(work / "dataset"), "--max-time", f"{minutes:g}", "--runs-dir",
                str(work / "runs"), "--name", "spinetail", "--no-progress", "--no-test"]) == 0
    detectors = _detectors(work / "runs" / "spinetail" / "weights" / "best.safetensors")
    trained = {name: _box_f1(reference, d.run(test).events) for name, d in detectors.items()}
    out: dict = {"reference_boxes": len(reference), "tested_seconds": round(duration - cut, 3),
                 "longest_reference_s": round(max(e.duration for e in reference), 3), "trained_60": trained}
    mixture = ROOT / "runs" / "bench-birdsound" / "unetseg" / "weights" / "best.safetensors"
    if mixture.is_file():  # the bird-mixture model of benchmarks/birdsound.py: no head, its components
        events = Detector(load_model(mixture)).run(test).events
        out["mixture_model"] = {"model": str(mixture.relative_to(ROOT)), **_box_f1(reference, events)}
    else:
        out["mixture_model"] = f"{mixture} not found (run benchmarks/birdsound.py first)"
    try:
        out["maad"] = _box_f1(reference, [Event(e.begin - cut, e.end - cut, e.low, e.high, e.label)
                                          for e in _maad_rois(wav, cut)])
    except ImportError:
        out["maad"] = "not installed (pip install -e '.[bench]')"
    out["box_f1_iou30"] = {"trained_60": trained["unetseg"]["f1_iou30"],
                           "trained_60_components": trained["components"]["f1_iou30"],
                           "mixture_model": out["mixture_model"]["f1_iou30"]
                           if isinstance(out["mixture_model"], dict) else None,
                           "maad": out["maad"]["f1_iou30"] if isinstance(out["maad"], dict) else None}
    return out


def _box_ap50(reference: dict[str, list[Event]], found: dict[str, list[Event]]) -> float | None:
    ref = [Event(e.begin, e.end, e.low, e.high, "call", file=k) for k, evs in reference.items() for e in evs]
    est = [Event(e.begin, e.end, e.low, e.high, "call", e.score, file=k) for k, evs in found.items() for e in evs]
    return average_precision(ref, est, ignore_labels=True)["ap50"]


def _pooled_f1(reference: dict[str, list[Event]], found: dict[str, list[Event]], iou: float) -> float:
    """Box F1 (IoU >= ``iou``, labels ignored) over recordings: matches counted per recording, summed."""
    return round(pooled_f1(box_scores(ref, found.get(k, []), iou, ignore_labels=True) for k, ref in reference.items()),
                 4)


def _batdetect2(wav: Path) -> list[Event]:
    """batdetect2's pretrained (UK) detector on a recording: every detection down to probability 0.01."""
    import batdetect2.api as api

    run = api.process_file(str(wav), config=api.get_config(detection_threshold=0.01))
    return [Event(float(d["start_time"]), float(d["end_time"]), float(d["low_freq"]), float(d["high_freq"]), "call",
                  float(d["det_prob"])) for d in run["pred_dict"]["annotation"]]


def bats(work: Path, minutes: float) -> dict:
    source = SHARED / "bat-calls-whombat"
    train_dir, test = work / "train", {}
    train_dir.mkdir()
    for wav in sorted(source.glob("*.wav")):
        if wav.stem in BAT_TEST:
            test[wav.stem] = wav
        else:
            (train_dir / wav.name).symlink_to(wav)
            table = source / f"{wav.stem}.Table.1.selections.txt"
            (train_dir / table.name).symlink_to(table)
    assert cli(["audio", "dataset", "--audio", str(train_dir), "--output", str(work / "dataset"), "--sample-rate",
                "384000", "--val-fraction", "0.25", "--test-fraction", "0"]) == 0
    t0 = time.perf_counter()
    assert cli(["train", "--data", str(work / "dataset"), "--max-time", f"{minutes:g}", "--runs-dir",
                str(work / "runs"), "--name", "bats", "--no-progress", "--no-test"]) == 0
    train_s = time.perf_counter() - t0
    detectors = _detectors(work / "runs" / "bats" / "weights" / "best.safetensors")
    reference = {k: read_annotations(source / f"{k}.Table.1.selections.txt") for k in test}
    found = {name: {k: d.run(wav).events for k, wav in test.items()} for name, d in detectors.items()}
    ap = {name: _box_ap50(reference, f) for name, f in found.items()}
    try:
        found["batdetect2"] = {k: _batdetect2(wav) for k, wav in test.items()}
        ap["batdetect2"] = _box_ap50(reference, found["batdetect2"])
    except ImportError:
        ap["batdetect2"] = None
        found["batdetect2"] = {}
    return {"test_recordings": list(test), "reference_boxes": sum(map(len, reference.values())),
            "train_seconds": round(train_s, 1), "box_ap50": ap,
            "found": {name: sum(map(len, f.values())) for name, f in found.items()},
            "box_f1_iou50": {name: _pooled_f1(reference, f, 0.5) for name, f in found.items() if f},
            "note": None if ap["batdetect2"] is not None else "batdetect2 not installed (pip install -e '.[bench]')"}


def _yolo_dataset(source: Path, out: Path, groups: list) -> Path:
    """coco-facade-mini in Ultralytics' segmentation layout (images linked, one polygon per line, classes as
    unetseg's indices - 1), with unetseg's class grouping; returns its data YAML."""
    from unetseg.data.coco import _load, class_groups

    names: list[str] = []
    for split in ("train", "valid"):
        coco = _load(source / split / "_annotations.coco.json")
        names, mapping = class_groups(coco, groups)
        (out / split / "images").mkdir(parents=True)
        (out / split / "labels").mkdir(parents=True)
        for info in coco.loadImgs(coco.getImgIds()):
            stem = Path(info["file_name"]).stem
            (out / split / "images" / info["file_name"]).symlink_to(source / split / info["file_name"])
            lines = []
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=info["id"])):
                if ann["category_id"] not in mapping or ann.get("iscrowd") or not isinstance(ann["segmentation"], list):
                    continue
                for poly in ann["segmentation"]:
                    xy = np.asarray(poly, np.float64).reshape(-1, 2) / [info["width"], info["height"]]
                    if len(xy) >= 3:
                        coords = " ".join(f"{v:.6f}" for v in np.clip(xy, 0, 1).ravel())
                        lines.append(f"{mapping[ann['category_id']] - 1} {coords}")
            (out / split / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    data = out / "data.yaml"
    data.write_text(json.dumps({"path": str(out), "train": "train/images", "val": "valid/images",
                                "names": {i - 1: n for i, n in enumerate(names) if i > 0}}))
    return data


def _yolo_results(weights: Path, images: list[Path], ids: dict[str, int]) -> list[dict]:
    """COCO results (RLE masks at the image's size, scores, unetseg class indices) of a YOLO model."""
    from pycocotools import mask as mask_utils
    from ultralytics import YOLO

    model, results = YOLO(str(weights)), []
    for path in images:
        (r,) = model.predict(str(path), conf=0.001, device="cpu", verbose=False, retina_masks=True, max_det=300)
        if r.masks is None:
            continue
        for m, c, s in zip(r.masks.data.numpy(), r.boxes.cls.numpy(), r.boxes.conf.numpy(), strict=True):
            rle = mask_utils.encode(np.asfortranarray((m > 0.5).astype(np.uint8)))
            rle["counts"] = rle["counts"].decode("ascii")
            results.append({"image_id": ids[path.name], "category_id": int(c) + 1, "segmentation": rle,
                            "score": float(s)})
    return results


def facades(work: Path, minutes: float) -> dict:
    from unetseg.data.coco import coco_truth
    from unetseg.data.discover import load_dataset
    from unetseg.instances.centres import coco_average_precision

    source = SHARED / "coco-facade-mini"
    t0 = time.perf_counter()
    assert cli(["train", "--data", str(source), "--max-time", f"{minutes:g}", "--runs-dir", str(work / "runs"),
                "--name", "facades", "--no-progress", "--no-test"]) == 0
    train_s = time.perf_counter() - t0
    model = work / "runs" / "facades" / "weights" / "best.safetensors"
    info = load_dataset(source)
    window = str(info.classes.index("window"))
    out: dict = {"classes": info.classes, "unetseg_train_seconds": round(train_s, 1), "mask_ap50": {},
                 "window_mask_ap50": {}}
    for name, objects in (("unetseg", "auto"), ("components", "components")):
        assert cli(["evaluate", "--model", str(model), "--split", "test", "--output", str(work / f"eval-{name}"),
                    "--figures", "0", "--objects", objects]) == 0
        scores = json.loads((work / f"eval-{name}" / "metrics.json").read_text())["instances"]
        out["mask_ap50"][name] = scores["mask"]["ap50"]
        out["window_mask_ap50"][name] = scores["mask"]["ap50_per_category"].get(window)
    try:
        from ultralytics import YOLO
    except ImportError:
        out["yolo"] = "ultralytics not installed (pip install -e '.[bench]')"
        return out
    data = _yolo_dataset(source, work / "yolo-data", info.coco["groups"])
    t0 = time.perf_counter()
    YOLO("yolo11n-seg.yaml").train(data=str(data), time=minutes / 60, epochs=1000, imgsz=640, device="cpu",
                                   workers=0, project=str(work / "yolo"), name="train", pretrained=False,
                                   amp=False, plots=False, verbose=False)
    yolo_s = time.perf_counter() - t0
    test_images = sorted(p for p in (source / "test").iterdir() if p.suffix == ".jpg")
    truth, ids = coco_truth(info.coco["jsons"], info.coco["groups"], [p.name for p in test_images])
    yolo = coco_average_precision(truth, _yolo_results(work / "yolo" / "train" / "weights" / "best.pt",
                                                       test_images, ids), "segm")
    out["mask_ap50"]["yolo"], out["window_mask_ap50"]["yolo"] = yolo["ap50"], yolo["ap50_per_category"].get(window)
    out["yolo_train_seconds"] = round(yolo_s, 1)
    return out


def _without_head(path: Path, out: Path) -> Path:
    """The model file of ``path`` less its instance head: the same network, its last layer cut to the class
    maps (what detect ran before the head)."""
    loaded = load_model(path)
    meta = {**loaded.meta, "model": {**loaded.meta["model"], "instances": "off"}}
    state = loaded.model.state_dict()
    last = [k for k, v in state.items() if k.endswith(".weight") and v.ndim == 4][-1]
    for key in (last, last.removesuffix("weight") + "bias"):
        if key in state:
            state[key] = state[key][:loaded.outputs]
    bare = create_model(meta["model"], loaded.input_spec.channels, loaded.outputs)
    bare.load_state_dict(state)
    save_model_file(out, bare, meta)
    return out


def speed(work: Path, minutes: float, model: Path | None = None) -> dict:
    """Detect on 10 minutes of finch song in soundscape noise, in turns: the syllables model with its head
    (instances decoded) and the same network without it (components, as before): real-time factors and
    their ratio."""
    if model is None:
        raise SystemExit("speed needs the syllables part's model (run --parts syllables,speed)")
    import soundfile as sf

    songs = sorted((SHARED / "bird-audio" / "birdsongrec-bird0" / "Wave").glob("*.wav"))
    pieces, sr = [], 32000
    while sum(map(len, pieces)) < 600 * sr:
        for song in songs:
            y, sr = load_audio(song)
            pieces.append(y)
    long = work / "ten_minutes.wav"
    sf.write(long, np.concatenate(pieces)[:600 * sr].astype(np.float32), sr, subtype="FLOAT")
    detectors = {"head": Detector(load_model(model)),
                 "no_head": Detector(load_model(_without_head(model, work / "no_head.safetensors")))}
    best = dict.fromkeys(detectors, float("inf"))
    for _ in range(3):
        for name, d in detectors.items():
            t = time.perf_counter()
            d.run(long)
            best[name] = min(best[name], time.perf_counter() - t)
    x = {name: round(600 / took, 1) for name, took in best.items()}
    return {"seconds_of_audio": 600, "x_real_time": x, "head_over_no_head": round(x["head"] / x["no_head"], 3),
            "backend": detectors["head"].engine.backend_name}


def _results(output: Path) -> dict:
    return json.loads(output.read_text()) if output.is_file() else {}


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
    output = Path(args.output)
    for part in parts:
        folder = work / part
        folder.mkdir()
        command = f"python benchmarks/instances.py --minutes {args.minutes:g} --parts {part}"
        if part == "speed":
            trained = _results(output).get("syllables", {}).get("model")
            result = speed(folder, args.minutes, Path(trained) if trained else None)
        else:
            result = {"syllables": syllables, "spinetail": spinetail, "bats": bats, "facades": facades}[part](
                folder, args.minutes)
        # Parts run in separate invocations (their budgets differ) share the file, read again just before it
        # is written: each part keeps its own command.
        report = _results(output)
        report.update({"benchmark": "instances", "machine": {**machine(), "cpu_count": os.cpu_count()},
                       part: {"command": command, "budget_minutes": args.minutes, **result}})
        report["not_run"] = [x for x in PARTS if x not in report]
        write_json(output, report)
        print(json.dumps({part: {k: v for k, v in report[part].items() if k != "detail"}}, indent=2))
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
