"""A BirdSoundsDenoising-style benchmark on real recordings, our recipe against the course-notebook one.

1. Mixtures: clean Bengalese finch songs (../shared/data/bird-audio, 30 recordings) + real soundscape
   backgrounds (../shared/data/soundscapes, 14 recordings) at SNRs -5, 0, 5, 10 dB; targets are ideal
   binary masks (clean power > noise power, and > 6 dB above the clean recording's median in that row).
   Birds and backgrounds are split by recording: test mixtures use neither in training.
2. The same CPU time budget for two recipes:
   - unetseg: the plain command, ``unetseg train --data MIX --max-time MIN``: the training plan chooses
     model, precision, loss, augmentation and schedule from the dataset and this machine (plan.json);
   - baseline, as course notebooks do it: plain U-Net (depth 4, width 64), BCE, Adam 1e-4,
     256x256 resize, no augmentation.
3. Test split: pixel IoU, Dice (over all pixels) and F1 (mean over images), overall and per SNR; SDR of
   the denoised test mixtures (mask the STFT with the prediction, invert) against the clean song, beside
   the SDR of the noisy input and of the ideal mask.

    .venv/bin/python benchmarks/birdsound.py --minutes 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from unetseg import train
from unetseg.audio.datasets import build_mixture_dataset, ideal_binary_mask
from unetseg.audio.detect import DetectOptions, detect_recording
from unetseg.audio.event_scores import sdr
from unetseg.audio.spectrogram import masked_inverse, preset, stft
from unetseg.cli.common import configure_logging
from unetseg.core.config import Config
from unetseg.core.fileio import new_run_dir, write_json
from unetseg.evaluation.evaluate_split import evaluate
from unetseg.evaluation.pixel_scores import image_score, scores_from_counts
from unetseg.models.modelfile import load_model
from unetseg.plan import machine

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
# Zhang & Li, WACV 2023, BirdSoundsDenoising test set (as quoted in our issue); other columns of their
# table are not reproduced here.
PUBLISHED_IOU = {"U-Net (BirdSoundsDenoising)": 0.629, "DeepLabV3 (BirdSoundsDenoising)": 0.723}

RECIPES = {
    # The plain command: `unetseg train --data MIX --max-time MIN`; the training plan chooses the rest.
    "unetseg": {},
    "baseline": {
        "model": {"arch": "classic", "depth": 4, "base_width": 64, "dropout": 0.0},
        "augment": {"enabled": False},
        "train": {"plan": False, "loss": "bce", "optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0,
                  "scheduler": "none", "batch_size": 8, "epochs": 10_000, "patience": 0},
        "data": {"size": [256, 256], "normalize": "none", "workers": 1},
    },
}


def scores(counts: list[np.ndarray]) -> dict[str, float]:
    total = np.sum(counts, axis=0)
    s = scores_from_counts(total)
    per_image_f1 = [image_score(c, True, "dice") for c in counts]  # empty truth and prediction: 1
    return {"iou": round(float(s["iou"][1]), 4), "dice": round(float(s["dice"][1]), 4),
            "f1": round(float(np.mean(per_image_f1)), 4), "images": len(counts)}


def by_snr(rows: list[dict], counts: list[np.ndarray]) -> dict[str, dict[str, float]]:
    groups: dict[float, list[np.ndarray]] = {}
    for row, c in zip(rows, counts, strict=True):
        snr = json.loads(Path(row["image"]).with_suffix(".json").read_text())["snr_db"]
        groups.setdefault(snr, []).append(c)
    return {f"{snr:+g} dB": scores(groups[snr]) for snr in sorted(groups)}


def denoising_sdr(model_path: Path, mix_dir: Path, out_dir: Path) -> dict[str, dict[str, float]]:
    """Mean SDR per SNR over the test mixtures: noisy input, our denoising, and the ideal mask."""
    model = load_model(model_path)
    cfg = preset("default")
    table: dict[float, dict[str, list[float]]] = {}
    for noisy_path in sorted((mix_dir / "test" / "audio").glob("*_noisy.wav")):
        clean, sr = sf.read(str(noisy_path).replace("_noisy", "_clean"), dtype="float32")
        noisy, _ = sf.read(noisy_path, dtype="float32")
        snr = float(noisy_path.stem.split("_snr")[1].split("_")[0])
        den_path = out_dir / noisy_path.name.replace("_noisy", "_denoised")
        detect_recording(model, noisy_path, DetectOptions(), denoise=den_path)
        denoised, _ = sf.read(den_path, dtype="float32")
        ideal = masked_inverse(stft(noisy, cfg), ideal_binary_mask(clean, noisy - clean, cfg, sr), cfg, sr)
        row = table.setdefault(snr, {"noisy": [], "denoised": [], "ideal_mask": []})
        row["noisy"].append(sdr(clean, noisy))
        row["denoised"].append(sdr(clean, denoised))
        row["ideal_mask"].append(sdr(clean, ideal))
    out = {f"{snr:+g} dB": {k: round(float(np.mean(v)), 2) for k, v in table[snr].items()} for snr in sorted(table)}
    out["overall"] = {k: round(float(np.mean([np.mean(table[s][k]) for s in table])), 2)
                      for k in ("noisy", "denoised", "ideal_mask")}
    return out


def _plan_choices(run_dir: Path) -> dict | None:
    path = run_dir / "plan.json"
    return {k: v["value"] for k, v in json.loads(path.read_text())["choices"].items()} if path.is_file() else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=8.0, help="training budget per recipe")
    p.add_argument("--recipes", default="unetseg,baseline")
    p.add_argument("--work", default=str(ROOT / "runs" / "bench-birdsound"))
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "birdsound.json"))
    args = p.parse_args()
    configure_logging()
    work = new_run_dir(Path(args.work).parent, Path(args.work).name)
    clean = sorted((SHARED / "bird-audio" / "bengalese-finch-gy6or6" / "wav").glob("*.wav")) + \
        sorted((SHARED / "bird-audio" / "birdsongrec-bird0" / "Wave").glob("*.wav"))
    noise = sorted((SHARED / "soundscapes").glob("*.wav"))
    if not clean or not noise:
        raise SystemExit(f"{SHARED}: the shared finch songs and soundscapes are missing")
    start = time.perf_counter()
    built = build_mixture_dataset(clean, noise, work / "mix", preset("default"))
    mix_seconds = time.perf_counter() - start
    print(f"mixtures: {built.windows} windows in {mix_seconds:.0f} s")

    results: dict = {}
    for name in args.recipes.split(","):
        recipe = RECIPES[name]
        cfg = Config.from_dict({
            "data": {"path": str(work / "mix"), **recipe.get("data", {})},
            "model": recipe.get("model", {}), "augment": recipe.get("augment", {}),
            "train": {"name": name, "runs_dir": str(work), "max_time": args.minutes, "progress": False,
                      **recipe.get("train", {})},
        })
        t0 = time.perf_counter()
        result = train(cfg)
        train_s = time.perf_counter() - t0
        ev = evaluate(result.best_model, work / "mix", "test", result.run_dir / "test", figures=6)
        sdrs = denoising_sdr(result.best_model, work / "mix", result.run_dir / "denoised")
        results[name] = {"train_seconds": round(train_s, 1), "epochs": result.epochs_run,
                         "best_epoch": result.best_epoch, "test": scores(ev.counts),
                         "test_by_snr": by_snr(ev.per_image, ev.counts), "sdr_db": sdrs,
                         "model": str(result.best_model),
                         "plan": _plan_choices(result.run_dir)}
        print(json.dumps({name: results[name]}, indent=2))
    report = {
        "benchmark": "birdsound",
        "command": f"python benchmarks/birdsound.py --minutes {args.minutes:g} --recipes {args.recipes}",
        "machine": {**machine(), "cpu_count": os.cpu_count(),
                    "processor": platform.processor() or platform.machine()},
        "data": {"clean_recordings": len(clean), "noise_recordings": len(noise), "snrs_db": [-5, 0, 5, 10],
                 "windows": built.windows, "ideal_mask": "clean power > noise power (0 dB local SNR) and > 6 dB "
                 "above the clean recording's median in that frequency row"},
        "budget_minutes": args.minutes,
        "published_iou": PUBLISHED_IOU,
        "results": results,
    }
    write_json(args.output, report)
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
