"""The machine as the probes see it, timing in turns, and the one cache of probe results.

The engine's backend probe (which backend runs fastest here) and the training plan's step probe (which
precision and model fit the budget) both measure callables in turns and keep the result per machine,
libraries and what was measured, under ``<cache>/probes/<kind>/``.
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from unetseg.core.fileio import cache_root, write_json
from unetseg.version import __version__


def machine_key(threads: int) -> dict[str, Any]:
    """What makes a probe's result hold on another machine: CPU, its vector units, libraries, threads."""
    import onnxruntime

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in flags.splitlines() if ln.startswith("model name")), "")
    return {"cpu": model or platform.processor(), "capability": torch.backends.cpu.get_cpu_capability(),
            "amx": " amx_bf16 " in flags.replace("\n", " "), "threads": threads, "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__}


def host_features(machine: dict[str, Any]) -> str:
    """The CPU features to name beside a figure, e.g. ``AVX512, AMX``."""
    return f"{machine['capability']}{', AMX' if machine['amx'] else ''}"


def rates_in_turns(runs: dict[str, Callable[[torch.Tensor], Any]], x: torch.Tensor, warmup: int = 2,
                   rounds: int = 4) -> dict[str, float]:
    """Inputs per second of each callable on the batch ``x``: ``warmup`` calls each, then the best of
    ``rounds`` calls taken in turns, so a passing load on a shared machine weighs on all of them alike."""
    for run in runs.values():
        for _ in range(warmup):
            run(x)
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            t = time.perf_counter()
            run(x)
            best[name] = min(best[name], time.perf_counter() - t)
    return {name: x.shape[0] / took for name, took in best.items()}


def probe_path(kind: str, key: Any) -> Path:
    """Where the probe of ``kind`` measured for ``key`` (JSON-able: machine, model, shapes...) is kept; the
    package version is part of the key, so a new version measures again."""
    digest = hashlib.sha256(json.dumps([__version__, key], sort_keys=True, default=str).encode()).hexdigest()[:32]
    return cache_root() / "probes" / kind / f"{digest}.json"


def cached_probe(kind: str, key: Any, measure: Callable[[], dict[str, Any]],
                 valid: Callable[[dict[str, Any]], bool] = lambda _: True) -> tuple[dict[str, Any], bool]:
    """The cached result of the probe ``kind`` for ``key`` when it reads back and is ``valid``, else
    ``measure()`` saved; and whether it was just measured."""
    path = probe_path(kind, key)
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if isinstance(cached, dict) and valid(cached):
                return cached, False
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
    result = measure()
    write_json(path, result)
    return result, True
