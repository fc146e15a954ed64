"""Inference speed and peak memory, all in one run: the default model (classic U-Net, depth 4, width 32,
3 channels, binary) at 256x256 and 1024x1024 through

- every backend of the engine, model only (batches of normalised tensors): torch eager contiguous and
  channels_last, torch bf16 autocast, onnxruntime fp32 and int8 (calibrated on the benchmark's images),
  as many batches as the folder holds, after warm-up runs (steady state);
- a naive loop as course notebooks write it (per image: PIL -> tensor -> model -> PNG), on the first images;
- the full ``unetseg predict`` command path on the folder (256 images at 256 px, 24 at 1024: about 8 s of
  work) with its defaults (``--backend auto``: reading, batching, restoring, writing PNGs), each call loading
  the model and its engine as a command does, after one call on one batch's images that pays the one-time
  probe and graph export; then one more call on that batch: ``predict_fixed_seconds`` in the summary is its
  time less the batch's at the fastest model-only rate (what a command pays once).

Each configuration runs in a fresh process, so its peak resident memory is its own, in ``--rounds`` rounds
over all configurations whose best rate is kept (the machine is shared: a passing load then weighs on
each configuration alike, not on one). Then the budget check: ``predict`` at the largest size through each
backend under ``--max-memory`` ``--budget`` GB, its peak's growth over the loaded engine beside the budget.
int8's masks are compared with fp32's (IoU). Weights are random: speed does not depend on them. Prints a
table and writes benchmarks/results/infer.json.

    .venv/bin/python benchmarks/infer.py
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

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
def peak_mb():  # VmHWM: this process's own peak (ru_maxrss would carry the parent's over fork and exec)
    with open("/proc/self/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM")) / 1024
from pathlib import Path
import numpy as np, torch
from PIL import Image
from unetseg.models.modelfile import load_model
mode, model_path, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])
batch, naive = int(sys.argv[4]), int(sys.argv[5])  # the naive loop times the first ``naive`` images
files = sorted(folder.glob("*.png"))
loaded = load_model(model_path)
spec = loaded.input_spec
size = spec.size
x = torch.randn(batch, 3, *size)

def timed(fn, n_images, passes=1, warm=None):
    (warm or fn)()  # warm-up: a backend's first runs fault in its memory (one-time)
    start = time.perf_counter()
    for _ in range(passes):
        fn()
    return passes * n_images / (time.perf_counter() - start)

per_folder = max(1, len(files) // batch)  # model only: as many batches as the folder holds, in steady state

with torch.inference_mode():
    extra = {}
    if mode == "eager_contiguous":
        model = loaded.model.eval()
        rate = timed(lambda: model(x), batch, per_folder)
    elif mode in ("torch", "torch-bf16", "onnxruntime", "onnxruntime-int8"):
        from unetseg.core.errors import UnetsegError
        from unetseg.inference import Engine, InferenceOptions
        try:
            engine = Engine(loaded, InferenceOptions(backend=mode, device="cpu", calibration=str(folder)))
        except UnetsegError as e:  # int8 refused below its agreement floor: reported, not timed
            print(json.dumps({"images_per_s": None, "peak_rss_mb": 0, "refused": str(e)}))
            sys.exit(0)
        engine.backend(x)  # ONNX Runtime's arena grows over its first runs
        rate = timed(lambda: engine.backend(x), batch, per_folder)
        extra["peak_before_check_mb"] = peak_mb()  # the agreement check below runs fp32 too
        if mode in ("torch-bf16", "onnxruntime-int8"):
            from unetseg.data.images import read_image
            from unetseg.data.transforms import normalize
            from unetseg.evaluation.pixel_scores import mask_agreement
            reference = Engine(loaded, InferenceOptions(backend="torch", device="cpu"))
            imgs = torch.stack([normalize(read_image(f, 3), spec.mean, spec.std) for f in files[:batch]])
            a = (torch.sigmoid(engine.backend(imgs)) > 0.5).numpy()
            b = (torch.sigmoid(reference.backend(imgs)) > 0.5).numpy()
            extra["mask_iou_vs_fp32"] = round(mask_agreement(a.astype(np.uint8), b.astype(np.uint8), 2, True), 4)
    elif mode == "naive_loop":
        model = loaded.model.eval()
        mean = torch.tensor(spec.mean).view(3, 1, 1); std = torch.tensor(spec.std).view(3, 1, 1)
        out = Path(sys.argv[6])
        def loop(files=files[:naive]):
            for f in files:
                img = Image.open(f).convert("RGB").resize((size[1], size[0]))
                t = (torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1) - mean) / std
                prob = torch.sigmoid(model(t[None]))[0, 0]
                Image.fromarray(((prob > 0.5).numpy() * 255).astype(np.uint8)).save(out / f.name)
        rate = timed(loop, naive, warm=lambda: loop(files[:1]))
    elif mode == "predict_command":
        from unetseg.prediction.predict_images import PredictOutputs, predict
        out = Path(sys.argv[6]) / "predict"  # not the naive loop's folder: its files are not unetseg's
        from unetseg.inference import InferenceOptions
        options = InferenceOptions(batch_size=batch, calibration=str(folder))
        used = []
        again = PredictOutputs(overwrite=True)
        warm = folder.parent / f"{folder.name}-warm"  # the probe and graph export, paid once before timing
        warm.mkdir(exist_ok=True)
        for f in files[:batch]:
            (warm / f.name).write_bytes(f.read_bytes())
        predict(model_path, warm, out, outputs=again, options=options)
        rate = timed(lambda: used.append(predict(model_path, folder, out, outputs=again, options=options).backend),
                     len(files), warm=lambda: None)
        extra["backend"] = used[-1]
        # what one command pays once (model load, the engine, the first runs' memory): one batch's folder
        start = time.perf_counter()
        predict(model_path, warm, out, outputs=again, options=options)
        extra["one_batch_seconds"] = round(time.perf_counter() - start, 3)
    elif mode.startswith("budget:"):  # predict under --max-memory: the peak's growth over the loaded engine
        from unetseg.core.errors import UnetsegError
        from unetseg.inference import Engine, InferenceOptions
        from unetseg.prediction.predict_images import PredictOutputs, predict
        options = InferenceOptions(backend=mode.split(":")[1], device="cpu", batch_size=batch,
                                   calibration=str(folder), max_memory=float(sys.argv[7]))
        try:
            engine = Engine(loaded, options)
        except UnetsegError as e:  # refused before any work: the budget holds
            print(json.dumps({"images_per_s": None, "peak_rss_mb": peak_mb(), "refused": str(e), "growth_mb": 0}))
            sys.exit(0)
        with open("/proc/self/status") as f:
            before = next(int(ln.split()[1]) for ln in f if ln.startswith("VmRSS")) / 1024
        start = time.perf_counter()
        predict(loaded, folder, Path(sys.argv[6]) / mode.replace(":", "-"), engine=engine,
                outputs=PredictOutputs(overwrite=True))
        rate = len(files) / (time.perf_counter() - start)
        extra |= {"max_memory_gb": float(sys.argv[7]), "rss_before_mb": round(before),
                  "growth_mb": round(peak_mb() - before), "tile": engine._auto_tile}
print(json.dumps({"images_per_s": rate, "peak_rss_mb": extra.pop("peak_before_check_mb", None) or peak_mb(),
                  **extra}))
"""

MODEL_ONLY = ("eager_contiguous", "torch", "torch-bf16", "onnxruntime", "onnxruntime-int8")
MODES = (*MODEL_ONLY, "naive_loop", "predict_command")


def make_model(path: Path, size: int) -> None:
    import torch

    from unetseg.core.config import ModelConfig
    from unetseg.data.inputspec import InputSpec
    from unetseg.models import create_model
    from unetseg.models.modelfile import build_meta, save_model_file

    torch.manual_seed(0)
    cfg = vars(ModelConfig())
    model = create_model(cfg, 3, 1)
    spec = InputSpec(3, (size, size), "resize", 16, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    save_model_file(path, model, build_meta(cfg, ["background", "foreground"], True, [(0, 0, 0), (255, 0, 0)],
                                            spec, 0.5))


def make_images(folder: Path, size: int, count: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")


def run_child(argv: list, env: dict) -> dict:
    """One configuration in a fresh process (its peak memory its own): the last JSON line it prints."""
    proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, argv)], capture_output=True, text=True, env=env)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="256,1024")
    p.add_argument("--rounds", type=int, default=3, help="runs of every mode; the best rate of each is kept")
    p.add_argument("--budget", type=float, default=4.5, help="--max-memory (GB) of the budget check: predict at the "
                   "largest size through each backend, its peak's growth over the loaded engine against the budget")
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "infer.json"))
    args = p.parse_args()
    rows, budget = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            # folders of about 8 s of the fastest backend's work, so a command's one-time costs (0.2-0.5 s here:
            # loading, the engine, the first runs' memory; ``one_batch_seconds``) are not most of the figure
            batch, count, naive = (8, 256, 64) if size <= 256 else (2, 24, 4)
            model, images, out = Path(tmp) / f"m{size}.safetensors", Path(tmp) / f"img{size}", Path(tmp) / f"out{size}"
            out.mkdir(exist_ok=True)
            make_model(model, size)
            make_images(images, size, count)
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "UNETSEG_CACHE": str(Path(tmp) / "cache")}
            best: dict[str, dict] = {}
            for round_ in range(args.rounds):  # rounds over all modes: a passing load hits each alike
                for mode in MODES:
                    r = run_child([mode, model, images, batch, naive, out], env)
                    print(json.dumps({"round": round_ + 1, "size": size, "mode": mode, **r}), flush=True)
                    kept = best.setdefault(mode, r)
                    if (r["images_per_s"] or 0) > (kept["images_per_s"] or 0):
                        best[mode] = {**r, "peak_rss_mb": max(r["peak_rss_mb"], kept["peak_rss_mb"])}
                    else:
                        kept["peak_rss_mb"] = max(r["peak_rss_mb"], kept["peak_rss_mb"])
            if size == max(int(v) for v in args.sizes.split(",")):  # --max-memory holds for every backend
                for backend in MODEL_ONLY[1:]:
                    r = run_child([f"budget:{backend}", model, images, batch, naive, out, args.budget], env)
                    r = {"size": size, "backend": backend, **r, "within": r["growth_mb"] <= args.budget * 1024}
                    print(json.dumps(r), flush=True)
                    budget.append(r)
            for mode in MODES:
                r = best[mode]
                rows.append({"size": size, "mode": mode, "batch": 1 if mode == "naive_loop" else batch,
                             "images_per_s": r["images_per_s"] and round(r["images_per_s"], 2),
                             "peak_rss_mb": round(r["peak_rss_mb"]),
                             **{k: v for k, v in r.items() if k not in ("images_per_s", "peak_rss_mb")}})
    summary = {}
    for size in sorted({r["size"] for r in rows}):
        by = {r["mode"]: r["images_per_s"] for r in rows if r["size"] == size}
        one = next(r for r in rows if r["size"] == size and r["mode"] == "predict_command")
        fastest = max((m for m in MODEL_ONLY if by[m]), key=by.__getitem__)
        summary[size] = {"fastest_model_only": fastest,
                         "predict_over_fastest_model_only": round(by["predict_command"] / by[fastest], 3),
                         # a command's one-time cost: its one-batch run less that batch at the fastest rate
                         "predict_fixed_seconds": round(one["one_batch_seconds"] - one["batch"] / by[fastest], 2),
                         "int8_over_onnxruntime_fp32": by["onnxruntime-int8"] and
                         round(by["onnxruntime-int8"] / by["onnxruntime"], 3),
                         "bf16_over_torch_fp32": round(by["torch-bf16"] / by["torch"], 3)}
        print(f"{size}x{size}: {json.dumps(summary[size])}")
    import torch

    machine = {"cpu_count": os.cpu_count(), "processor": platform.processor() or platform.machine(),
               "capability": torch.backends.cpu.get_cpu_capability(),
               "amx": "amx_bf16" in Path("/proc/cpuinfo").read_text()}
    output = Path(args.output).resolve()
    shown = output.relative_to(ROOT) if output.is_relative_to(ROOT) else output
    command = f"python benchmarks/infer.py --rounds {args.rounds} --budget {args.budget} --output {shown}"
    write = {"benchmark": "infer", "command": command, "machine": machine,
             "model": "classic U-Net depth 4 width 32 (the default), 3 channels, binary", "runs": rows,
             "summary": summary, "budget": budget}
    from unetseg.core.fileio import write_json

    write_json(args.output, write)
    print(f"written {args.output}")


if __name__ == "__main__":
    main()
