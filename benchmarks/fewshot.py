"""Five boxes, then the rest: few-shot call detection by the DCASE few-shot bioacoustic protocol, unetseg beside
its peers in one run -> ``benchmarks/results/fewshot.json``.

Protocol (DCASE 2021-23 task 5): the first boxes of each recording are given (5 shots; fewer where a recording
has fewer than 7 boxes, and the hermit songs pooled by species, see ``SETS``); the audio up to the end of the
last shot is the support; only the rest is scored. Event F: time IoU >= 0.3; box F1: time x frequency
IoU >= 0.3; both one-to-one (``scipy.optimize.linear_sum_assignment`` on IoU), pooled over each set's
recordings.

Methods, side by side:
- ``prior_5shot``: ``audio dataset --preset prior --annotated until-last-box --paste 4`` on the shots, ``train
  --init builtin --max-time MINUTES`` (what ``train`` does by itself on boxes), ``audio detect``;
- ``scratch_5shot``: the same dataset, ``train --arch classic`` (random weights: what unetseg did before, and
  what ``train`` does by itself on time-only labels);
- ``prior_self_train``: ``prior_5shot``'s surest query detections (score >= 0.7) added to the shots as labels,
  then half as long again from that model (self-training, kept in unetseg only if it measures better);
- ``prior_zero_shot``: ``audio detect --model builtin``, no shots;
- ``maad_a``, ``maad_b``: scikit-maad ROIs, its two gallery recipes (``MAAD``);
- ``template``: the DCASE baseline (STFT with n_fft = sr / 10, median subtraction along both axes, normalised
  cross-correlation of the shots, threshold = the largest similarity among the shots themselves);
- ``batdetect2`` (bats only): its pretrained detector, detection threshold 0.3.

Across recordings (``bats_across``): every box of the prior's three bat recordings trains a model (from the
prior, and from scratch), which detects on the benchmark's three other bat recordings (every call scored).

No scored recording is in the prior's training data: the script refuses one listed in the model card.

    .venv/bin/python benchmarks/fewshot.py --minutes 2.5
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from unetseg.audio.annotations import Event, events_by_file, format_raven, read_annotations
from unetseg.audio.event_scores import box_iou

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BATS = SHARED / "bat-calls-whombat"
BENCH_BATS = ("XC820302-Noctilio_leporinus-2013.01.08-CL00088_A_15",
              "XC823144-Desmodus_rotundus-2013.01.16-CL00262_A_30",
              "XC824040-Carollia_castanea-2013.01.17-CL00312_A_15")  # the other three train the prior
FIELD = SHARED / "field-boxes"
HERMIT = ("Phae.long1", "Phae.long2", "Phae.long3", "Phae.long4")  # one species: pooled, shots from the first
FINCH = SHARED / "bird-audio" / "bengalese-finch-gy6or6"
SHOTS, MIN_QUERY, IOU = 5, 2, 0.3
METHODS = ("prior_5shot", "prior_self_train", "scratch_5shot", "prior_zero_shot", "maad_a", "maad_b", "template",
           "batdetect2")


@dataclass
class Task:
    """One recording: the boxes given (``shots``), those scored (``query``, after ``query_from`` s)."""

    wav: Path
    shots: list[Event]
    query: list[Event]
    query_from: float
    bands: bool = True
    predicted: dict[str, list[Event]] = field(default_factory=dict)


def _split(wav: Path, events: list[Event], shots: int) -> Task:
    events = sorted(events, key=lambda e: e.begin)
    given = events[:shots]
    end = max((e.end for e in given), default=0.0)
    return Task(wav, given, [e for e in events[shots:] if e.begin >= end], end)


def bat_tasks() -> list[Task]:
    return [_split(BATS / f"{s}.wav", read_annotations(BATS / f"{s}.Table.1.selections.txt"), SHOTS)
            for s in BENCH_BATS]


def spinetail_tasks() -> list[Task]:
    folder = SHARED / "bird-audio" / "spinetail"
    wav = next(folder.glob("*.wav"))
    table = next(p for p in folder.iterdir() if p.suffix == ".txt")
    return [_split(wav, read_annotations(table), SHOTS)]


def _read_clamped(table: Path) -> list[Event]:
    """A Raven table whose boxes may reach below 0 Hz (the storm petrel's, converted from Sonic Visualiser):
    those low edges read as 0 Hz, as Raven draws them."""
    import tempfile

    lines = table.read_text().splitlines()
    column = lines[0].split("\t").index("Low Freq (Hz)")
    rows = [line.split("\t") for line in lines[1:]]
    for row in rows:
        row[column] = str(max(0.0, float(row[column])))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / table.name
        copy.write_text("\n".join([lines[0], *("\t".join(r) for r in rows)]) + "\n")
        return read_annotations(copy)


def field_tasks() -> list[Task]:
    """The hermit's four songs pooled (the first five boxes in file order given, the rest scored); every other
    recording given all but ``MIN_QUERY`` of its boxes (3 of 5, or 1 of 3)."""
    tasks, given = [], 0
    for stem in HERMIT:
        events = sorted(read_annotations(FIELD / f"{stem}.Table.1.selections.txt"), key=lambda e: e.begin)
        take = min(len(events), SHOTS - given)
        given += take
        tasks.append(_split(FIELD / f"{stem}.wav", events, take) if take else
                     Task(FIELD / f"{stem}.wav", [], events, 0.0))
    for table in sorted(FIELD.glob("*.Table.1.selections.txt")):
        stem = table.name.removesuffix(".Table.1.selections.txt")
        if stem not in HERMIT:
            events = _read_clamped(table)
            tasks.append(_split(FIELD / f"{stem}.wav", events, min(SHOTS, len(events) - MIN_QUERY)))
    return tasks


def finch_tasks(songs: int) -> list[Task]:
    table = events_by_file(read_annotations(FINCH / "annotations_generic.csv"))
    by_stem = {Path(k).stem: v for k, v in table.items() if k}
    tasks = []
    for wav in sorted((FINCH / "wav").glob("*.wav"))[:songs]:
        task = _split(wav, by_stem[wav.stem], SHOTS)
        task.bands = False
        tasks.append(task)
    return tasks


def _iou_time(a: Event, b: Event) -> float:
    inter = min(a.end, b.end) - max(a.begin, b.begin)
    union = max(a.end, b.end) - min(a.begin, b.begin)
    return max(inter, 0.0) / union if union > 0 else 0.0


def matches(reference: list[Event], estimated: list[Event], iou) -> int:
    """Pairs matched one-to-one with IoU >= ``IOU`` (the most total IoU)."""
    if not reference or not estimated:
        return 0
    m = np.array([[iou(r, e) for e in estimated] for r in reference])
    rows, cols = linear_sum_assignment(np.where(m >= IOU, -m, 1.0))
    return int(sum(m[r, c] >= IOU for r, c in zip(rows, cols, strict=True)))


def pooled_f(tasks: list[Task], method: str, iou) -> dict:
    tp = sum(matches(t.query, t.predicted[method], iou) for t in tasks)
    n_est = sum(len(t.predicted[method]) for t in tasks)
    n_ref = sum(len(t.query) for t in tasks)
    p, r = tp / n_est if n_est else 0.0, tp / n_ref if n_ref else 0.0
    return {"f": round(2 * p * r / (p + r), 4) if p + r else 0.0, "precision": round(p, 4), "recall": round(r, 4),
            "tp": tp, "estimated": n_est, "reference": n_ref}


def scored(events: list[Event], task: Task) -> list[Event]:
    return [e for e in events if e.begin >= task.query_from]


# ---------------------------------------------------------------- unetseg
def shots_folder(tasks: list[Task], folder: Path) -> Path:
    """The recordings that hold shots, each with a table of its shots beside it."""
    folder.mkdir(parents=True)
    for t in tasks:
        if t.shots:
            (folder / t.wav.name).symlink_to(t.wav)
            (folder / f"{t.wav.stem}.selections.txt").write_text(format_raven(t.shots))
    return folder


def detect(cli, model: str, tasks: list[Task], out: Path) -> dict[str, list[Event]]:
    inputs = out.parent / f"{out.name}-inputs"
    inputs.mkdir()
    for t in tasks:
        (inputs / t.wav.name).symlink_to(t.wav)
    assert cli(["audio", "detect", "--model", model, "--input", str(inputs), "--output", str(out)]) == 0
    table = events_by_file(read_annotations(out / "events.csv"))
    return {Path(k).stem: v for k, v in table.items() if k}


def unetseg_methods(cli, tasks: list[Task], work: Path, minutes: float, with_self_training: bool) -> dict[str, float]:
    shots = shots_folder(tasks, work / "shots")
    assert cli(["audio", "dataset", "--audio", str(shots), "--output", str(work / "dataset"), "--preset", "prior",
                "--annotated", "until-last-box", "--paste", "4"]) == 0
    seconds = {}
    for method, extra in (("prior_5shot", ["--init", "builtin"]), ("scratch_5shot", ["--arch", "classic"])):
        t0 = time.perf_counter()
        assert cli(["train", "--data", str(work / "dataset"), "--max-time", f"{minutes:g}", "--runs-dir",
                    str(work / "runs"), "--name", method, "--no-progress", *extra]) == 0
        seconds[method] = round(time.perf_counter() - t0, 1)
        found = detect(cli, str(work / "runs" / method / "weights" / "best.safetensors"), tasks, work / method)
        for t in tasks:
            t.predicted[method] = scored(found.get(t.wav.stem, []), t)
    if with_self_training:
        t0 = time.perf_counter()
        self_train(cli, tasks, work, minutes / 2)
        seconds["prior_self_train"] = round(time.perf_counter() - t0, 1)
    found = detect(cli, "builtin", tasks, work / "prior_zero_shot")
    for t in tasks:
        t.predicted["prior_zero_shot"] = scored(found.get(t.wav.stem, []), t)
    return seconds


def across_recordings(cli, work: Path, minutes: float) -> dict:
    """Every box of the prior's three bat recordings trains (from the prior, and from scratch); detect runs on
    the benchmark's three other bat recordings, every call scored."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("prior", ROOT / "benchmarks" / "prior.py")
    assert spec and spec.loader
    prior = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prior)  # PRIOR_BATS: the recordings the prior trained on
    folder = work / "recordings"
    folder.mkdir(parents=True)
    for stem in prior.PRIOR_BATS:
        (folder / f"{stem}.wav").symlink_to(BATS / f"{stem}.wav")
        (folder / f"{stem}.selections.txt").symlink_to(BATS / f"{stem}.Table.1.selections.txt")
    assert cli(["audio", "dataset", "--audio", str(folder), "--output", str(work / "dataset"), "--preset",
                "prior"]) == 0
    tasks = [Task(BATS / f"{s}.wav", [], read_annotations(BATS / f"{s}.Table.1.selections.txt"), 0.0)
             for s in BENCH_BATS]
    out: dict = {"trained_on": list(prior.PRIOR_BATS), "scored": [t.wav.name for t in tasks],
                 "calls": sum(len(t.query) for t in tasks)}
    for method, extra in (("prior_finetuned", ["--init", "builtin"]), ("scratch", ["--arch", "classic"])):
        assert cli(["train", "--data", str(work / "dataset"), "--max-time", f"{minutes:g}", "--runs-dir",
                    str(work / "runs"), "--name", method, "--no-progress", *extra]) == 0
        found = detect(cli, str(work / "runs" / method / "weights" / "best.safetensors"), tasks, work / method)
        for t in tasks:
            t.predicted[method] = found.get(t.wav.stem, [])
        events = sum(len(t.predicted[method]) for t in tasks)
        out[method] = {"events": events, "events_per_call": round(events / out["calls"], 2),
                       "event_f": pooled_f(tasks, method, _iou_time)["f"],
                       "box_f1": pooled_f(tasks, method, box_iou)["f"]}
    return out


SELF_SCORE = 0.7  # detections at least this sure become labels


def self_train(cli, tasks: list[Task], work: Path, minutes: float) -> None:
    """Self-training (as the strongest DCASE systems do): ``prior_5shot``'s surest detections in the query
    (score >= ``SELF_SCORE``) join the shots as labels, and the fine-tuned model trains on them for
    ``minutes`` more -> ``prior_self_train``."""
    folder = work / "pseudo"
    folder.mkdir()
    for t in tasks:
        sure = [e for e in t.predicted["prior_5shot"] if e.score is not None and e.score >= SELF_SCORE]
        if t.shots or sure:
            (folder / t.wav.name).symlink_to(t.wav)
            (folder / f"{t.wav.stem}.selections.txt").write_text(format_raven(sorted(t.shots + sure,
                                                                                     key=lambda e: e.begin)))
    assert cli(["audio", "dataset", "--audio", str(folder), "--output", str(work / "pseudo-dataset"), "--preset",
                "prior", "--annotated", "until-last-box", "--paste", "2"]) == 0
    assert cli(["train", "--data", str(work / "pseudo-dataset"), "--max-time", f"{minutes:g}", "--runs-dir",
                str(work / "runs"), "--name", "prior_self_train", "--no-progress", "--init",
                str(work / "runs" / "prior_5shot" / "weights" / "best.safetensors")]) == 0
    found = detect(cli, str(work / "runs" / "prior_self_train" / "weights" / "best.safetensors"), tasks,
                   work / "prior_self_train")
    for t in tasks:
        t.predicted["prior_self_train"] = scored(found.get(t.wav.stem, []), t)


# ---------------------------------------------------------------- peers
MAAD = {  # scikit-maad's gallery recipes: "find ROIs" (a) and "unsupervised sound classification" (b)
    "maad_a": {"nperseg": 1024, "db_range": 96, "smooth": 1.2, "bin_std": 2.0, "bin_per": 0.25, "min_roi": 50},
    "maad_b": {"nperseg": 1024, "db_range": 80, "smooth": 0.5, "bin_std": 8.0, "bin_per": 0.5, "min_roi": 25},
}


def maad_rois(y: np.ndarray, sr: int, p: dict) -> list[Event]:
    from maad import rois, sound, util

    sxx, tn, fn, _ = sound.spectrogram(y, sr, nperseg=p["nperseg"], noverlap=p["nperseg"] // 2)
    db = util.power2dB(sxx, db_range=p["db_range"]) + p["db_range"]
    clean, _, _ = sound.remove_background(db)
    smooth = sound.smooth(clean, std=p["smooth"])
    mask = rois.create_mask(im=smooth, mode_bin="relative", bin_std=p["bin_std"], bin_per=p["bin_per"])
    _, df = rois.select_rois(mask, min_roi=p["min_roi"], max_roi=None)
    df = util.format_features(df, tn, fn)
    return [Event(float(r.min_t), float(r.max_t), float(r.min_f), float(r.max_f), "roi") for r in df.itertuples()]


def template_matching(y: np.ndarray, sr: int, task: Task) -> list[Event]:
    """The DCASE baseline, written from the task's description (see the module docstring)."""
    import librosa
    from scipy.signal import find_peaks
    from skimage.feature import match_template

    n_fft = int(sr / 10)
    hop = n_fft // 4
    s = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop))
    s = s - np.median(s, axis=1, keepdims=True)
    s = s - np.median(s, axis=0, keepdims=True)

    def cols(e: Event) -> tuple[int, int]:
        a = int(np.floor(e.begin * sr / hop + 1))
        return a, max(a + 1, int(np.ceil(e.end * sr / hop + 1)))

    templates = [s[2:-2, slice(*cols(e))] for e in task.shots]
    similar = [float(match_template(s[:, slice(*cols(o))], t).max()) for i, t in enumerate(templates)
               for j, o in enumerate(task.shots) if j != i and cols(o)[1] - cols(o)[0] >= t.shape[1]]
    if not similar:
        return []
    threshold = max(similar)
    first = int(np.ceil(task.query_from * sr / hop + 1))
    query = s[:, first:]
    active = np.zeros(s.shape[1] + 1, bool)
    for t in templates:
        if t.shape[1] >= query.shape[1]:
            continue
        score = match_template(query, t).max(axis=0)
        peaks, _ = find_peaks(score, height=threshold, distance=max(1, t.shape[1]))
        for p in peaks:
            active[first + p:first + p + t.shape[1]] = True
    edges = np.flatnonzero(np.diff(active.astype(int)))
    low = min(e.low for e in task.shots if e.low is not None) if task.bands else None
    high = max(e.high for e in task.shots if e.high is not None) if task.bands else None
    return [Event(a * hop / sr, b * hop / sr, low, high, "match") for a, b in zip(edges[::2] + 1, edges[1::2] + 1,
                                                                                 strict=False)]


def batdetect(wav: Path) -> list[Event]:
    from batdetect2 import api

    found = api.process_file(str(wav), config=api.get_config(detection_threshold=0.3))
    return [Event(float(a["start_time"]), float(a["end_time"]), float(a["low_freq"]), float(a["high_freq"]), "bat")
            for a in found["pred_dict"]["annotation"]]


def peer_methods(tasks: list[Task], bats: bool) -> None:
    import soundfile as sf

    for t in tasks:
        y, sr = sf.read(t.wav, dtype="float32", always_2d=True)
        y = y.mean(axis=1)
        for name, recipe in MAAD.items():
            t.predicted[name] = scored(maad_rois(y, sr, recipe), t)
        t.predicted["template"] = scored(template_matching(y, sr, t), t) if t.shots else []
        if bats:
            t.predicted["batdetect2"] = scored(batdetect(t.wav), t)


# ---------------------------------------------------------------- run
def check_kept_out(tasks: list[Task]) -> None:
    card = json.loads((ROOT / "src" / "unetseg" / "audio" / "prior" / "calls.json").read_text())
    trained = {Path(p).name for p in card["training_recordings"]["real"]}
    clash = [t.wav.name for t in tasks if t.wav.name in trained]
    if clash:
        raise SystemExit(f"{clash[0]} is in the prior's training data (calls.json): it cannot be scored")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=2.5, help="fine-tuning time per set (wall minutes)")
    p.add_argument("--sets", default="bats,spinetail,field,finch,bats_across")
    p.add_argument("--across-minutes", type=float, default=5.0, help="training time of the across-recordings test")
    p.add_argument("--finch-songs", type=int, default=3)
    p.add_argument("--self-train", action="store_true", help="also prior_self_train (it measured worse on bats and "
                   "spinetail: 0.32 and 0.29 against 0.60 and 0.50)")
    p.add_argument("--work", default=str(ROOT / "runs" / "bench-fewshot"))
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "fewshot.json"))
    args = p.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from unetseg.cli import main as cli
    from unetseg.cli.common import configure_logging
    from unetseg.core.fileio import new_run_dir, write_json

    configure_logging(False)
    work = new_run_dir(Path(args.work).parent, Path(args.work).name)
    makers = {"bats": bat_tasks, "spinetail": spinetail_tasks, "field": field_tasks,
              "finch": lambda: finch_tasks(args.finch_songs)}
    from unetseg.plan import machine

    result = {"protocol": __doc__.split("\n\n")[1], "machine": {**machine(), "cpu_count": os.cpu_count()},
              "minutes": args.minutes, "sets": {}}
    for name in args.sets.split(","):
        if name == "bats_across":
            result["across_recordings"] = across_recordings(cli, work / name, args.across_minutes)
            print(name, json.dumps(result["across_recordings"]), flush=True)
            write_json(args.output, result)
            continue
        tasks = makers[name]()
        check_kept_out(tasks)
        seconds = unetseg_methods(cli, tasks, work / name, args.minutes, args.self_train)
        peer_methods(tasks, bats=name == "bats")
        methods = [m for m in METHODS if m in tasks[0].predicted]
        entry = {"recordings": [t.wav.name for t in tasks], "shots": sum(len(t.shots) for t in tasks),
                 "query_boxes": sum(len(t.query) for t in tasks),
                 "event_f": {m: pooled_f(tasks, m, _iou_time)["f"] for m in methods},
                 "box_f1": ({m: pooled_f(tasks, m, box_iou)["f"] for m in methods} if tasks[0].bands else None),
                 "events_found": {m: sum(len(t.predicted[m]) for t in tasks) for m in methods},
                 "detail": {m: pooled_f(tasks, m, _iou_time) for m in methods},
                 "fine_tune_s": seconds["prior_5shot"], "scratch_train_s": seconds["scratch_5shot"],
                 "self_train_s": seconds.get("prior_self_train")}
        result["sets"][name] = entry
        print(name, json.dumps({k: entry[k] for k in ("query_boxes", "event_f", "box_f1", "events_found",
                                                      "fine_tune_s")}), flush=True)
        write_json(args.output, result)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
