"""Real-time factor and peak memory of ``unetseg audio detect`` on long recordings.

Builds a 10-minute and a 1-hour recording by concatenating the shared finch songs and soundscapes
(written block by block), then runs detection on each in a fresh process - events only, and events
plus denoised audio - and reports seconds of audio per second of processing and the process's peak
resident memory. Prints a summary and writes benchmarks/results/detect_speed.json.

    .venv/bin/python benchmarks/detect_speed.py --model runs/bench-birdsound/unetseg/weights/best.safetensors
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

from unetseg.audio.io import load_audio
from unetseg.fileio import write_json

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

CHILD = r"""
import json, resource, sys, time
from unetseg.audio.detect import DetectOptions, detect_recording
from unetseg.modelfile import load_model
model = load_model(sys.argv[1])
start = time.perf_counter()
result = detect_recording(model, sys.argv[2], DetectOptions(), denoise=sys.argv[3] or None, device="cpu")
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "audio_seconds": result.duration, "events": len(result.events),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def build_recording(path: Path, minutes: float, sr: int) -> None:
    """Concatenate the shared recordings (resampled to ``sr``) until ``minutes`` long, block by block."""
    sources = sorted((SHARED / "soundscapes").glob("*.wav")) + \
        sorted((SHARED / "bird-audio" / "bengalese-finch-gy6or6" / "wav").glob("*.wav"))
    pieces = [load_audio(f, sr)[0] for f in sources]
    need = int(minutes * 60 * sr)
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as out:
        written, i = 0, 0
        while written < need:
            piece = pieces[i % len(pieces)][: need - written]
            out.write(np.clip(piece, -1, 1))
            written += len(piece)
            i += 1


def latest_model() -> Path | None:
    runs = sorted((ROOT / "runs").glob("bench-birdsound*/unetseg/weights/best.safetensors"),
                  key=lambda p: p.stat().st_mtime)
    return runs[-1] if runs else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="model file [default: the latest birdsound benchmark model]")
    p.add_argument("--minutes", default="10,60", help="recording lengths [default: 10,60]")
    p.add_argument("--sample-rate", type=int, default=22050)
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "detect_speed.json"))
    args = p.parse_args()
    model = Path(args.model) if args.model else latest_model()
    if model is None or not model.is_file():
        sys.exit("no model: run benchmarks/birdsound.py first or pass --model")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for minutes in (float(m) for m in args.minutes.split(",")):
            wav = Path(tmp) / f"long_{minutes:g}min.wav"
            build_recording(wav, minutes, args.sample_rate)
            for denoise in (False, True):
                out = str(Path(tmp) / "denoised.wav") if denoise else ""
                proc = subprocess.run([sys.executable, "-c", CHILD, str(model), str(wav), out],
                                      capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
                if proc.returncode:
                    sys.exit(proc.stderr[-2000:])
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                row = {"minutes": minutes, "denoise": denoise, "real_time_factor": round(r["audio_seconds"] /
                       r["seconds"], 1), "seconds": round(r["seconds"], 1), "peak_rss_mb": round(r["peak_rss_mb"]),
                       "events": r["events"]}
                runs.append(row)
                print(json.dumps(row))
                if out:
                    Path(out).unlink(missing_ok=True)
            wav.unlink()
    report = {
        "benchmark": "detect_speed",
        "command": f"python benchmarks/detect_speed.py --model {model} --minutes {args.minutes}",
        "machine": {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "sample_rate": args.sample_rate,
        "runs": runs,
    }
    write_json(args.output, report)
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
