"""Load on ``unetseg serve``: N concurrent clients x M requests, then a burst past capacity.

Starts the server on 127.0.0.1 in a subprocess, measures the engine's model-only rate first (same model,
backend, threads and batch, in this process, before the server starts), then:
- sustained: ``--clients`` threads each send ``--requests`` images back to back (bounded by ``--seconds``);
  failed requests, p50/p95 latency, throughput as a ratio of the model-only rate, and the server's resident
  memory sampled every 0.1 s (peak of the first and of the last third of the run);
- past capacity: ``--burst`` requests at once against ``--queue``: how many got 503 (with Retry-After),
  and whether the server still answers /health afterwards.

Prints and writes JSON (benchmarks/results/serve_load.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import torch

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def model_only_rate(model: Path, image_path: Path, backend: str, threads: int, batch: int, seconds: float) -> dict:
    """Images/s of ``Engine.probabilities`` on batches of ``batch`` copies of the image (no HTTP, no decoding)."""
    from unetseg.data.images import read_image
    from unetseg.inference import Engine, InferenceOptions
    from unetseg.models.modelfile import load_model

    torch.set_num_threads(threads)
    loaded = load_model(model)
    engine = Engine(loaded, InferenceOptions(backend=backend, batch_size=batch, threads=threads))
    image = read_image(image_path, loaded.input_spec.channels)
    engine.probabilities([image] * batch)  # warm-up
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        engine.probabilities([image] * batch)
        done += batch
    return {"images_per_s": done / (time.perf_counter() - start), "backend": engine.backend_name, "batch": batch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "runs/bench-camvid/camvid-plan/weights/best.safetensors"))
    ap.add_argument("--image", default=str(ROOT.parent / "shared/data/camvid-mini/test/0001TP_008550.png"))
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=15, help="per client")
    ap.add_argument("--seconds", type=float, default=120, help="stop the sustained phase after this long")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--max-batch", type=int, default=4)
    ap.add_argument("--queue", type=int, default=8)
    ap.add_argument("--burst", type=int, default=40)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/serve_load.json"))
    args = ap.parse_args()
    body = Path(args.image).read_bytes()

    reference = model_only_rate(Path(args.model), Path(args.image), args.backend, args.threads,
                                min(args.max_batch, args.clients), seconds=15)
    print(f"model only: {reference['images_per_s']:.2f} images/s ({reference['backend']}, batch {reference['batch']})")

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "unetseg", "-q", "serve", "--model", args.model, "--port",
                               str(port), "--threads", str(args.threads), "--backend", reference["backend"],
                               "--max-batch", str(args.max_batch), "--queue", str(args.queue)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("server did not start")
            time.sleep(0.2)
        httpx.post(url + "/predict", content=body, timeout=60)  # warm-up

        memory: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                memory.append((time.monotonic(), rss_mb(server.pid)))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        latencies: list[float] = []
        failures: list[int] = []
        end_by = time.monotonic() + args.seconds

        def client() -> None:
            with httpx.Client(timeout=120) as c:
                for _ in range(args.requests):
                    if time.monotonic() > end_by:
                        return
                    t0 = time.perf_counter()
                    r = c.post(url + "/predict", content=body)
                    if r.status_code == 200:
                        latencies.append(time.perf_counter() - t0)
                    else:
                        failures.append(r.status_code)

        start = time.perf_counter()
        workers = [threading.Thread(target=client) for _ in range(args.clients)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - start
        stop.set()
        sampler.join()
        throughput = len(latencies) / elapsed
        third = max(1, len(memory) // 3)
        mem_first, mem_last = max(m for _, m in memory[:third]), max(m for _, m in memory[-third:])

        burst_codes: list[int] = []
        retry_after: list[str | None] = []

        def burst_one() -> None:
            try:
                r = httpx.post(url + "/predict", content=body, timeout=120)
                burst_codes.append(r.status_code)
                retry_after.append(r.headers.get("retry-after"))
            except httpx.HTTPError:
                burst_codes.append(-1)

        burst = [threading.Thread(target=burst_one) for _ in range(args.burst)]
        for b in burst:
            b.start()
        for b in burst:
            b.join()
        alive = httpx.get(url + "/health", timeout=5).status_code == 200
    finally:
        server.terminate()
        server.wait(timeout=10)

    quantiles = statistics.quantiles(latencies, n=20) if len(latencies) >= 2 else [float("nan")] * 19
    result = {
        "host": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                 "capability": torch.backends.cpu.get_cpu_capability(),
                 "amx": "amx" in Path("/proc/cpuinfo").read_text()},
        "model": args.model, "image": args.image, "threads": args.threads, "backend": reference["backend"],
        "clients": args.clients, "requests": len(latencies) + len(failures), "failed": len(failures),
        "latency_s": {"p50": round(statistics.median(latencies), 3), "p95": round(quantiles[18], 3)},
        "throughput_images_per_s": round(throughput, 3),
        "model_only_images_per_s": round(reference["images_per_s"], 3),
        "throughput_ratio": round(throughput / reference["images_per_s"], 3),
        "rss_mb": {"first_third_peak": round(mem_first, 1), "last_third_peak": round(mem_last, 1)},
        "burst": {"requests": args.burst, "queue": args.queue, "ok": burst_codes.count(200),
                  "busy_503": burst_codes.count(503), "other": len([c for c in burst_codes if c not in (200, 503)]),
                  "retry_after_on_503": sorted({r for c, r in zip(burst_codes, retry_after, strict=True) if c == 503}),
                  "server_alive_after": alive},
        "command": " ".join(["python", *sys.argv]),
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
