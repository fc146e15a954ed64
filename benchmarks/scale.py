"""Single-process corpus throughput, and what it projects to for 1 million images and 100,000 hours of audio.

Images: ``predict`` over CamVid test images with the CamVid plan model (reading, the model, writing mask
PNGs), beside the model alone on the same images already in memory. Audio: ``audio detect`` over the
Bengalese finch recordings with the bird-mixture model (seconds of audio per second), beside reading and
spectrograms alone. Projections assume processes that do not share a machine's cores (one process per
machine like this one, or per GPU) and linear scaling, which holds while inputs are spread evenly and
storage keeps up: the rank split has no communication until the final merge.

Prints and writes JSON (benchmarks/results/scale.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def images(model: Path, folder: Path, limit: int) -> dict:
    from unetseg.data.images import read_image
    from unetseg.inference import Engine, InferenceOptions
    from unetseg.models.modelfile import load_model
    from unetseg.prediction.postprocess import to_mask
    from unetseg.prediction.predict_images import predict

    files = sorted(folder.glob("*.png"))[:limit]
    loaded = load_model(model)
    engine = Engine(loaded, InferenceOptions(backend="auto"))
    predict(loaded, files[:2], tempfile.mkdtemp(), engine=engine)  # warm-up
    start = time.perf_counter()
    predict(loaded, files, tempfile.mkdtemp(), engine=engine)
    end_to_end = len(files) / (time.perf_counter() - start)
    pixels = [read_image(f, loaded.input_spec.channels) for f in files]
    start = time.perf_counter()
    for image in pixels:
        to_mask(engine.probabilities([image])[0], engine.loaded)
    model_only = len(files) / (time.perf_counter() - start)
    return {"images": len(files), "size": list(pixels[0].shape[:2]), "backend": engine.backend_name,
            "images_per_s": round(end_to_end, 2), "model_only_images_per_s": round(model_only, 2),
            "outside_model_share": round(1 - end_to_end / model_only, 3)}


def audio(model: Path, folder: Path) -> dict:
    import soundfile as sf

    from unetseg.audio.detect import Detector
    from unetseg.audio.recordings import load_audio
    from unetseg.audio.spectrogram import spectrogram_image
    from unetseg.models.modelfile import load_model

    files = sorted(folder.glob("*.wav"))
    seconds = sum(sf.info(str(f)).duration for f in files)
    detector = Detector(load_model(model))
    detector.run(files[0])  # warm-up
    start = time.perf_counter()
    for f in files:
        detector.run(f)
    rate = seconds / (time.perf_counter() - start)
    start = time.perf_counter()
    for f in files:
        y, sr = load_audio(f, detector.cfg.sample_rate)
        spectrogram_image(y, sr, detector.cfg)
    front = seconds / (time.perf_counter() - start)
    return {"recordings": len(files), "seconds": round(seconds, 1), "backend": detector.engine.backend_name,
            "audio_s_per_s": round(rate, 1), "reading_and_spectrogram_alone_audio_s_per_s": round(front, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image-model", default=str(ROOT / "runs/bench-camvid/camvid-plan/weights/best.safetensors"))
    ap.add_argument("--audio-model", default=str(ROOT / "runs/bench-birdsound-plan/unetseg/weights/best.safetensors"))
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/scale.json"))
    args = ap.parse_args()
    img = images(Path(args.image_model), SHARED / "camvid-mini" / "test", args.images)
    aud = audio(Path(args.audio_model), SHARED / "bird-audio" / "bengalese-finch-gy6or6" / "wav")
    projection = {}
    for n in (1, 8, 64):
        projection[str(n)] = {"1M_images_h": round(1e6 / (img["images_per_s"] * n) / 3600, 1),
                              "100k_hours_audio_h": round(1e5 * 3600 / (aud["audio_s_per_s"] * n) / 3600, 1)}
    result = {
        "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                 "capability": torch.backends.cpu.get_cpu_capability(),
                 "amx": "amx" in Path("/proc/cpuinfo").read_text(), "gpu": torch.cuda.is_available()},
        "images": img, "audio": aud,
        "projection_processes_like_this_one": projection,
        "command": "python benchmarks/scale.py",
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
