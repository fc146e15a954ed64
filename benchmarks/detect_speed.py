"""Speed of ``unetseg audio detect`` per configuration, with its accuracy and the machine's compute limit.

For each configuration (backend, model window in columns, overlap in columns):
- real-time factor and peak memory on a 10-minute recording (the shared finch songs and soundscapes
  concatenated), each in a fresh process;
- accuracy: pixel IoU of detect's whole-recording masks against the ideal binary masks of the
  bird-mixture benchmark's test recordings (``benchmarks/birdsound.py``'s mix folder), and the
  benchmark's own window-level test IoU (``evaluate`` on the test split) of each backend.
The default configuration (what ``audio detect`` does with no flags) is also run on a 1-hour recording,
with denoising, and on a folder of 100 recordings of 10 s. First, in the same run (``stages``): the front end
alone on one core (``front_end_x``, real-time factor), the model alone on detect's default windows
(``model_only_x``: the best of three passes; the best of its runs), and ``audio detect`` end to end on 10 min,
1 h, 360 x 10 s and 100 x 1 min at 44.1 kHz (``--file-rate``): for each, two pairs of the model alone and then
the command (``pairs``), ``over_model`` the mean of the pairs' ratios and ``x`` the faster run.
The compute limit is the machine's measured matmul rate (fp32 and bf16) divided by the model's FLOPs per
second of audio. Writes benchmarks/results/detect_speed.json (``--skip-configurations``: the stages only, of
any audio model, ``builtin`` too).

    .venv/bin/python benchmarks/detect_speed.py [--model runs/bench-birdsound/unetseg/weights/best.safetensors]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from unetseg.audio.recordings import load_audio
from unetseg.core.fileio import write_json

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

CHILD = r"""
import json, sys, time
def peak_mb():  # VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork and exec)
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM")) / 1024
from pathlib import Path
import numpy as np
args = json.loads(sys.argv[1])
from unetseg.audio.detect import Detector
from unetseg.audio.settings import DetectOptions
from unetseg.inference import InferenceOptions
from unetseg.models.modelfile import load_model
model = load_model(args["model"])
options = DetectOptions(window=args["window"], overlap=args["overlap"])
inference = InferenceOptions(backend=args["backend"], device="cpu")
t0 = time.perf_counter()
detector = Detector(model, options, inference)
setup = time.perf_counter() - t0
out = {"backend_used": detector.engine.backend_name, "setup_seconds": round(setup, 2)}
if args.get("iou_mix"):
    from unetseg.audio.datasets import ideal_binary_mask
    from unetseg.evaluation.pixel_scores import confusion_counts
    import torch
    total = np.zeros(4, np.int64)
    for noisy_path in sorted(Path(args["iou_mix"]).glob("*_noisy.wav")):
        import soundfile as sf
        noisy, sr = sf.read(noisy_path, dtype="float32")
        clean, _ = sf.read(str(noisy_path).replace("_noisy", "_clean"), dtype="float32")
        truth = ideal_binary_mask(clean, noisy - clean, detector.cfg, sr)
        pred = detector.run(noisy_path, keep_mask=True).mask
        c = confusion_counts(torch.from_numpy(pred)[None], torch.from_numpy(truth)[None].long(), 2)[0, 1].numpy()
        total += c
    tp, fp, _, fn = total
    out["detect_iou"] = round(float(tp / (tp + fp + fn)), 4)
if args.get("mode") == "front_end":  # reading, resampling, STFT, dB image: one core, no model
    import torch
    torch.set_num_threads(1)
    from unetseg.audio.detect import _columns
    from unetseg.audio.recordings import audio_info
    seconds, start = 0.0, time.perf_counter()
    for p in args["inputs"]:
        info = audio_info(p)
        for _ in _columns(Path(p), info, detector.cfg, detector.options.block_seconds, None, False, [0]):
            pass
        seconds += info.duration
    print(json.dumps(out | {"audio_seconds": seconds, "seconds": time.perf_counter() - start,
                            "peak_rss_mb": peak_mb()}))
    sys.exit(0)
if args.get("mode") == "model_only":  # the engine alone on detect's windows and batches of real columns
    from unetseg.audio.detect import _columns
    from unetseg.audio.recordings import audio_info
    p = Path(args["inputs"][0])
    cols = np.concatenate([c for c, _ in _columns(p, audio_info(p), detector.cfg, 20.0, None, False, [0])], axis=1)
    step = detector.width - detector.overlap
    windows = [cols[:, s:s + detector.width] for s in range(0, cols.shape[1] - detector.width + 1, step)]
    batches = [np.stack(windows[i:i + detector.batch]) for i in range(0, len(windows) - detector.batch + 1,
                                                                       detector.batch)]
    detector.engine.native(batches[0])  # warm-up
    took = float("inf")
    for _ in range(3):  # the best of three passes: the machine is shared
        start = time.perf_counter()
        for b in batches:
            detector.engine.native(b)
        took = min(took, time.perf_counter() - start)
    rate = detector.cfg.sample_rate or audio_info(p).sample_rate  # a model at each file's own rate: the file's
    seconds = len(batches) * detector.batch * step * detector.cfg.hop_length / rate
    print(json.dumps(out | {"audio_seconds": seconds, "seconds": took, "window": detector.width,
                            "overlap": detector.overlap, "batch": detector.batch, "peak_rss_mb": peak_mb()}))
    sys.exit(0)
paths = [Path(p) for p in args["inputs"]]
start = time.perf_counter()
seconds = events = 0
if args.get("mode") == "command":  # what `audio detect` runs: detect_folder, writing each Raven table
    import tempfile
    import soundfile as sf
    from unetseg.audio.runner import detect_folder
    from unetseg.audio.recordings import audio_info
    # its one-time start (imports of the output and process-group code) is paid on a second of audio first,
    # as the model's is by Detector(): the figure is the rate at which the command goes through audio
    warm = Path(tempfile.mkdtemp()) / "warm.wav"
    sf.write(warm, np.zeros(22050, np.float32), 22050)
    t0 = time.perf_counter()
    detect_folder(detector, [warm], tempfile.mkdtemp())
    out["command_start_seconds"] = round(time.perf_counter() - t0, 2)
    start = time.perf_counter()
    done = detect_folder(detector, paths, tempfile.mkdtemp())
    events = sum(done.events.values())
    seconds = sum(audio_info(p).duration for p in paths)
else:
    denoise = (lambda p: Path(args["denoise"]) / (p.stem + ".wav")) if args["denoise"] else (lambda p: None)
    for p, r in detector.run_many(paths, denoise):
        seconds += r.duration
        events += len(r.events)
took = time.perf_counter() - start
out |= {"audio_seconds": seconds, "seconds": took, "events": events,
        "peak_rss_mb": peak_mb()}
print(json.dumps(out))
"""


_PIECES: dict[int, list[np.ndarray]] = {}


def build_recording(path: Path, minutes: float, sr: int, offset: int = 0) -> None:
    """Concatenate the shared recordings (resampled to ``sr``) until ``minutes`` long, block by block."""
    if sr not in _PIECES:
        sources = sorted((SHARED / "soundscapes").glob("*.wav")) + \
            sorted((SHARED / "bird-audio" / "bengalese-finch-gy6or6" / "wav").glob("*.wav"))
        _PIECES[sr] = [load_audio(f, sr)[0] for f in sources]
    pieces = _PIECES[sr]
    need = int(minutes * 60 * sr)
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as out:
        written, i = 0, offset
        while written < need:
            piece = pieces[i % len(pieces)][: need - written]
            out.write(np.clip(piece, -1, 1))
            written += len(piece)
            i += 1


def latest_model() -> Path | None:
    runs = sorted((ROOT / "runs").glob("bench-birdsound*/unetseg/weights/best.safetensors"),
                  key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def child(args: dict, threads: int | None = None) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if threads:  # every library's pool to ``threads`` (torch's too, set in the child)
        env |= {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def matmul_gflops(dtype: str) -> float:
    import time

    import torch

    a = torch.randn(2048, 2048).to(getattr(torch, dtype))
    b = torch.randn(2048, 2048).to(getattr(torch, dtype))
    a @ b
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * 2048**3 / best / 1e9


def model_flops_per_audio_second(model_path: Path, window: int, overlap: int) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from unetseg.audio.spectrogram import SpectrogramConfig, row_frequencies
    from unetseg.models.modelfile import load_model

    loaded = load_model(model_path)
    cfg = SpectrogramConfig.from_dict(loaded.meta["spectrogram"])
    columns_per_second = (cfg.sample_rate or 22050) / cfg.hop_length
    # The rows detect feeds the model (a model planned at native size records no input size).
    rows = len(row_frequencies(cfg, cfg.sample_rate or 22050))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        loaded.model(torch.zeros(1, 1, rows, window))
    return counter.get_total_flops() * columns_per_second / (window - overlap)


def evaluate_iou(model: Path, mix: Path, backend: str, work: Path) -> float:
    from unetseg.evaluation.evaluate_split import evaluate
    from unetseg.evaluation.pixel_scores import scores_from_counts
    from unetseg.inference import InferenceOptions

    ev = evaluate(model, mix, "test", work / f"eval-{backend}", options=InferenceOptions(backend=backend,
                  device="cpu"), figures=0)
    return round(float(scores_from_counts(np.sum(ev.counts, axis=0))["iou"][1]), 4)


def stages(model: Path, tmp: Path, rate: int) -> dict:
    """The front end alone on one core, the model alone at detect's default windows and batches, and ``audio
    detect`` end to end (default settings) on 10 min, 1 h, 360 recordings of 10 s and 100 of 1 min, each in a
    fresh process; which stage bounds each."""
    ten, hour = tmp / f"front_10min_{rate}.wav", tmp / f"front_60min_{rate}.wav"
    build_recording(ten, 10, rate)
    build_recording(hour, 60, rate)
    folders = {"folder_10s": (360, 10 / 60), "folder_1min": (100, 1.0)}
    inputs = {"10min": [ten], "1h": [hour]}
    for name, (count, minutes) in folders.items():
        folder = tmp / name
        folder.mkdir()
        for i in range(count):
            build_recording(folder / f"rec{i:03d}.wav", minutes, rate, offset=i)
        inputs[name] = sorted(str(f) for f in folder.glob("*.wav"))
    base = {"model": str(model), "backend": "auto", "window": None, "overlap": None, "denoise": ""}
    front = child({**base, "mode": "front_end", "inputs": [str(hour)]}, threads=1)
    front_x = front["audio_seconds"] / front["seconds"]
    alone: list[dict] = []
    end_to_end = {}

    def model_alone() -> float:
        alone.append(child({**base, "mode": "model_only", "inputs": [str(ten)]}))
        return alone[-1]["audio_seconds"] / alone[-1]["seconds"]

    for name, files in inputs.items():
        # pairs: the model alone (best of three passes), then the command, twice; each pair's ratio is taken
        # within minutes, so the shared machine's drift over the run does not fall on one side of it
        pairs = []
        for _ in range(2):
            model_x = model_alone()
            r = child({**base, "mode": "command", "inputs": [str(f) for f in files]})
            pairs.append((r["audio_seconds"] / r["seconds"], model_x, r))
        x, _, r = max(pairs, key=lambda p: p[0])
        ratios = [round(e / m, 3) for e, m, _ in pairs]
        end_to_end[name] = {"x": round(x, 1), "over_model": round(float(np.mean(ratios)), 3),
                            "pairs": [{"x": round(e, 1), "model_x": round(m, 1), "over_model": q}
                                      for (e, m, _), q in zip(pairs, ratios, strict=True)],
                            "recordings": len(files), "command_start_seconds": r.get("command_start_seconds"),
                            "audio_seconds": round(r["audio_seconds"], 1), "peak_rss_mb": round(r["peak_rss_mb"]),
                            "events": r["events"], "backend_used": r["backend_used"]}
    model_x = max(a["audio_seconds"] / a["seconds"] for a in alone)
    bound = {name: "model" if e["over_model"] >= 0.85 else "front end, reading or per-recording work"
             for name, e in end_to_end.items()}
    return {"file_rate": rate, "front_end_x": round(front_x, 1), "front_end_threads": 1,
            "model_only_x": round(model_x, 1),
            "model_only": {k: alone[-1][k] for k in ("window", "overlap", "batch", "backend_used")},
            "end_to_end": end_to_end, "bound_by": bound}


CONFIGS = [  # backend, window, overlap (columns); None = detect's defaults
    ("torch", 256, 64),
    ("onnxruntime", 1024, 64),
    ("onnxruntime-int8", 1024, 64),
    ("torch-bf16", 256, 64),
    ("torch-bf16", 1024, 64),
    ("torch-bf16", 1024, 32),
    ("auto", None, None),
]


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model file [default: the latest birdsound benchmark model]")
    p.add_argument("--mix", default=None, help="the bird-mixture dataset [default: beside the model's run]")
    p.add_argument("--sample-rate", type=int, default=22050, help="rate of the configurations' recordings")
    p.add_argument("--file-rate", type=int, default=44100, help="rate of the front-end and end-to-end recordings "
                   "(a field recorder's; the model's rate means no resampling)")
    p.add_argument("--skip-configurations", action="store_true", help="only the front end, the model alone and "
                   "end to end (a few minutes), not each backend and window with its accuracy")
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "detect_speed.json"))
    args = p.parse_args()
    from unetseg.models.modelfile import model_path

    model = model_path(args.model) if args.model else latest_model()  # any audio model file, or builtin
    if model is None or not model.is_file():
        sys.exit("no model: run benchmarks/birdsound.py first or pass --model")
    mix = Path(args.mix) if args.mix else model.parents[2] / "mix"
    if not args.skip_configurations and not (mix / "test" / "audio").is_dir():  # only the accuracy needs it
        sys.exit(f"{mix}: no bird-mixture dataset (test/audio); pass --mix, or --skip-configurations to time "
                 "the stages of any audio model")
    machine = {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
               "capability": torch.backends.cpu.get_cpu_capability(),
               "amx": "amx_bf16" in Path("/proc/cpuinfo").read_text(), "torch_threads": torch.get_num_threads(),
               "matmul_gflops": {d: round(matmul_gflops(d), 1) for d in ("float32", "bfloat16")}}
    print(json.dumps(machine), flush=True)
    rows, special = [], []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        speed = stages(model, tmp, args.file_rate)
        print(json.dumps(speed), flush=True)
        if args.skip_configurations:
            write_json(args.output, {"benchmark": "detect_speed", "command": " ".join(["python", *sys.argv]),
                                     "machine": machine, **speed})
            print(f"written {args.output}")
            return
        ten = tmp / "long_10min.wav"
        build_recording(ten, 10, args.sample_rate)
        evaluated: dict[str, float] = {}
        for backend, window, overlap in CONFIGS:
            r = child({"model": str(model), "backend": backend, "window": window, "overlap": overlap,
                       "inputs": [str(ten)], "denoise": "", "iou_mix": str(mix / "test" / "audio")})
            used = r["backend_used"]
            if used not in evaluated:
                evaluated[used] = evaluate_iou(model, mix, used, tmp)
            w = window or 1024
            row = {"backend": backend, "backend_used": used, "window": window, "overlap": overlap,
                   "real_time_factor": round(r["audio_seconds"] / r["seconds"], 1),
                   "peak_rss_mb": round(r["peak_rss_mb"]), "detect_iou": r["detect_iou"],
                   "test_iou": evaluated[used], "setup_seconds": r["setup_seconds"],
                   "gflop_per_audio_second": round(model_flops_per_audio_second(model, w, overlap or 64) / 1e9, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
        hour = tmp / "long_60min.wav"
        build_recording(hour, 60, args.sample_rate)
        folder = tmp / "folder"
        folder.mkdir()
        for i in range(100):
            build_recording(folder / f"rec{i:03d}.wav", 10 / 60, args.sample_rate, offset=i)
        den = tmp / "den"
        den.mkdir()
        for name, inputs, denoise in (("10 min", [ten], False), ("1 hour", [hour], False),
                                      ("1 hour + denoised audio", [hour], True),
                                      ("100 recordings x 10 s", sorted(folder.glob("*.wav")), False)):
            r = child({"model": str(model), "backend": "auto", "window": None, "overlap": None,
                       "inputs": [str(f) for f in inputs], "denoise": str(den) if denoise else ""})
            row = {"input": name, "backend_used": r["backend_used"],
                   "real_time_factor": round(r["audio_seconds"] / r["seconds"], 1),
                   "seconds": round(r["seconds"], 1), "peak_rss_mb": round(r["peak_rss_mb"]), "events": r["events"]}
            special.append(row)
            print(json.dumps(row), flush=True)
    default = next(r for r in rows if r["backend"] == "auto")
    peak = machine["matmul_gflops"]["bfloat16" if default["backend_used"] == "torch-bf16" else "float32"]
    limit = peak / default["gflop_per_audio_second"]
    report = {
        "benchmark": "detect_speed",
        "command": " ".join(["python", *sys.argv]),
        "machine": machine, **speed, "sample_rate": args.sample_rate, "configurations": rows,
        "default_runs": special,
        "compute_limit": {"matmul_gflops_used": peak, "gflop_per_audio_second": default["gflop_per_audio_second"],
                          "real_time_factor_limit": round(limit, 1),
                          "ours_over_limit": round(default["real_time_factor"] / limit, 3)},
    }
    write_json(args.output, report)
    print(json.dumps(report["compute_limit"]))
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
