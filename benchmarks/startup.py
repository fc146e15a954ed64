"""Start-up: wall seconds from launch to exit of commands that do no work (``--help``, ``info``, refusals of bad
input), each in a fresh process, beside the import time of each heavy module alone -> ``results/startup.json``.

    .venv/bin/python benchmarks/startup.py --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("numpy", "scipy.signal", "cv2", "torch", "onnxruntime", "lightning", "librosa", "fastapi")
AIMS = {"--help": 1.0, "info": 2.0, "refusal": 2.0}


def wall(argv: list[str], repeat: int, cwd: Path) -> tuple[float, int]:
    """The median wall seconds of ``argv`` over ``repeat`` fresh processes, and its exit code."""
    times, code = [], 0
    for _ in range(repeat):
        t = time.perf_counter()
        code = subprocess.run(argv, cwd=cwd, capture_output=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}).returncode
        times.append(time.perf_counter() - t)
    return round(statistics.median(times), 3), code


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--model", default="builtin", help="the model file for info [default: the built-in prior]")
    p.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "startup.json"))
    args = p.parse_args()
    exe = [sys.executable, "-m", "unetseg"]
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        commands = {
            "--help": [*exe, "--help"],
            "audio detect --help": [*exe, "audio", "detect", "--help"],
            "info": [*exe, "info", args.model],
            "refusal": [*exe, "predict", "--model", args.model, "--input", "missing", "--output", "o"],
            "refusal (detect)": [*exe, "audio", "detect", "--model", args.model, "--input", "missing.wav", "--output",
                                 "o"],
            "refusal (train)": [*exe, "train", "--data", "missing"],
        }
        measured = {name: wall(argv, args.repeat, cwd) for name, argv in commands.items()}
        imports = {m: wall([sys.executable, "-c", f"import {m}"], args.repeat, cwd)[0] for m in MODULES}
        python = wall([sys.executable, "-c", "pass"], args.repeat, cwd)[0]
    from unetseg.plan import machine

    result = {"seconds": {k: v[0] for k, v in measured.items()}, "exit_codes": {k: v[1] for k, v in measured.items()},
              "import_seconds": imports, "python_seconds": python,
              "aims": {k: {"aim_s": a, "measured_s": measured[k][0], "met": measured[k][0] <= a}
                       for k, a in AIMS.items()},
              "machine": {**machine(), "cpu_count": os.cpu_count()}, "repeat": args.repeat}
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
