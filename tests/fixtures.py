"""Helpers shared by the tests of several packages: real data, tiny datasets and model files, the command
line."""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from PIL import Image
from safetensors.torch import save_file

from unetseg.audio.annotations import Event
from unetseg.audio.review import Review
from unetseg.audio.review_store import create_review
from unetseg.audio.spectrogram import SpectrogramMapping
from unetseg.cli import main
from unetseg.core.config import Config
from unetseg.data.inputspec import InputSpec
from unetseg.models import create_model
from unetseg.models.modelfile import build_meta, read_meta, save_model_file


def column_mapping(rows: int = 4) -> SpectrogramMapping:
    # 1 kHz, hop 10: one column is 10 ms; rows descending like our images
    return SpectrogramMapping(1000, 0, 10, 10, [float(r) for r in range(rows - 1, -1, -1)], {})


def yaml_load(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


TINY_CFG = {"arch": "classic", "encoder": "", "encoder_weights": None, "depth": 2, "base_width": 4,
        "batch_norm": True, "dropout": 0.0, "attention": False}


def run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


TINY = ["--arch", "classic", "--depth", "3", "--base-width", "8", "--batch-size", "4", "--no-progress",
        "--workers", "0", "--val-grid", "2"]


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]


LIMIT = 3 << 30  # the data segment a case may grow to; its peak must stay under PEAK


PEAK = 1.5 * 2**30


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (LIMIT, LIMIT))


def cli(argv: list[str], cwd: Path) -> tuple[int, str, float]:
    """Exit code, stderr and peak RSS (bytes) of ``unetseg ARGV`` in a fresh process.

    The peak is the process's own VmHWM: ``ru_maxrss`` carries the parent's resident size over fork and exec,
    so under a pytest process grown past 1.5 GB every case read as 1.5 GB."""
    script = ("import sys\nfrom unetseg.cli import main\ntry:\n    code = main(sys.argv[1:])\n"
              "except SystemExit as e:\n    code = e.code\n"
              "peak = next(ln for ln in open('/proc/self/status') if ln.startswith('VmHWM:')).split()[1]\n"
              "sys.stderr.write('\\nPEAK %s\\n' % peak)\nsys.exit(code)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", script, "-q", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=180, preexec_fn=limit_memory)
    err, _, peak = r.stderr.rpartition("\nPEAK ")
    return r.returncode, err if peak else r.stderr, float(peak or 0) * 1024


def digest(paths: list[Path]) -> dict[str, str]:
    """What the user's files hold (and which exist), to compare before and after a command."""
    out = {}
    for p in paths:
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else "missing"
    return out


def check_case(work: Path, argv: list[str], needle: str, keep: list[Path]) -> float:
    before = digest(keep)
    code, err, peak = cli(argv, work)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), f"{argv}: exit {code}\n{err}"
    assert needle in lines[0], f"{argv}: {lines[0]}"
    assert digest(keep) == before, f"{argv} changed {keep}"
    assert peak < PEAK, f"{argv}: peak {peak / 2**30:.2f} GB"
    return peak


def check_cases(work: Path, cases: dict[str, tuple[list[str], str, list[Path]]]) -> None:
    with ThreadPoolExecutor(2) as pool:
        futures = {name: pool.submit(check_case, work, argv, needle, keep)
                   for name, (argv, needle, keep) in cases.items()}
    failures, peaks = [], {}
    for name, future in futures.items():
        try:
            peaks[name] = future.result()
        except AssertionError as e:
            failures.append(f"{name}: {e}")
    assert not failures, "\n".join(failures)
    worst = max(peaks, key=peaks.get)
    print(f"{len(peaks)} cases refused; highest peak RSS {peaks[worst] / 2**30:.2f} GB ({worst})")


def crafted_model(work: Path, name: str, change: object) -> Path:
    """A copy of a model file with its metadata changed by ``change(meta)`` (or its raw header text)."""
    from safetensors.torch import load_file

    src = work / ("birds.safetensors" if name.startswith("audio") else "pad.safetensors")
    from unetseg.models.modelfile import FORMAT

    meta = read_meta(src)
    tensors = load_file(str(src))
    header = change(meta, tensors) if callable(change) else change
    text = header if isinstance(header, str) else json.dumps(meta)
    path = work / "crafted" / f"{name}.safetensors"
    path.parent.mkdir(exist_ok=True)
    save_file(tensors, str(path), metadata={"format": FORMAT, "meta": text})
    return path


def set_field(path: str, value: object) -> object:
    def change(meta: dict, _tensors: dict) -> None:
        keys = path.split(".")
        target = meta
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value

    return change


def write_blob_dataset(root: Path, counts: dict[str, int], size: int = 64, seed: int = 0) -> Path:
    """Grey images of one to three bright discs in noise, with 0/255 masks: objects with more inside than
    edge, so that backends are compared on what they predict rather than on single boundary pixels."""
    from unetseg.core.fileio import write_png

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for split, n in counts.items():
        for i in range(n):
            mask = np.zeros((size, size), bool)
            for _ in range(rng.integers(1, 4)):
                cy, cx, r = rng.integers(8, size - 8), rng.integers(8, size - 8), rng.integers(6, 14)
                mask |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            image = np.clip(60 + 120 * mask + rng.normal(0, 25, mask.shape), 0, 255).astype(np.uint8)
            write_png(root / split / "images" / f"{split}{i}.png", image)
            write_png(root / split / "masks" / f"{split}{i}.png", mask.astype(np.uint8) * 255)
    return root


def spectrogram_mapping(rows: int) -> SpectrogramMapping:
    return SpectrogramMapping(1000, 0, 10, 20, list(np.linspace(8000, 0, rows).round(3)), {})


def kill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float = 120,
               victim: Callable[[], int] | None = None) -> None:
    """SIGKILL ``proc`` (or the process ``victim()`` names, then wait for ``proc`` to end) as soon as
    ``ready()``; fail when it ends first."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ready():
            if victim is None:
                proc.kill()
            else:
                os.kill(victim(), signal.SIGKILL)
            proc.communicate(timeout=300)
            return
        if proc.poll() is not None:
            raise AssertionError(f"finished before it could be killed: {proc.stderr.read().decode()[-500:]}")
        time.sleep(0.002)
    proc.kill()
    raise AssertionError("never reached the point to kill it")


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(f.relative_to(root)): f.read_bytes() for f in sorted(root.rglob("*")) if f.is_file()}


CLASSIC = {"arch": "classic", "encoder": "", "encoder_weights": None, "depth": 3, "base_width": 8,
           "batch_norm": True, "dropout": 0.1, "attention": False}


def write_rare_class_dataset(root: Path, n_train: int = 12, size: int = 64) -> Path:
    """Three classes: background, a large 'field' half of every image, and a small 'sign' square in every
    fourth train image only; a dataset YAML names them."""
    from unetseg.core.fileio import write_png

    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("valid", 4), ("test", 2)):
        for i in range(n):
            mask = np.zeros((size, size), np.uint8)
            mask[size // 2:] = 1
            if split != "train" or i % 4 == 0:
                y, x = rng.integers(4, size // 2 - 8, 2)
                mask[y:y + 5, x:x + 5] = 2
            image = (mask[..., None] * np.array([60, 30, 90], np.uint8) + rng.integers(0, 40, (size, size, 3))
                     ).astype(np.uint8)
            write_png(root / split / "images" / f"{split}{i}.png", image)
            write_png(root / split / "masks" / f"{split}{i}.png", mask)
    (root / "data.yaml").write_text(yaml.safe_dump({
        "name": "rare", "root": ".", "classes": ["background", "field", "sign"],
        **{s: {"images": f"{s}/images", "masks": f"{s}/masks"} for s in ("train", "valid", "test")}}))
    return root / "data.yaml"


COLOURS = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
SMALL = {"arch": "classic", "depth": 2, "base_width": 4, "dropout": 0.0}  # over Config().model's defaults


def tiny_model_file(folder: Path, mode: str = "resize", size: list[int] | tuple | None = None, width: int = 4,
                    depth: int = 2, *, name: str | None = None, cfg: dict | None = None, channels: int = 3,
                    classes: tuple[str, ...] = ("background", "call"), colours: list | None = None,
                    norm: tuple[tuple, tuple] | None = None, seed: int | None = None,
                    last: tuple[float, float | None] | None = None, **meta: object) -> Path:
    """The one factory of untrained model files: a small classic U-Net (or ``cfg``) saved as
    ``<folder>/<name or mode>.safetensors``, binary for two ``classes``; ``norm`` is (mean, std); ``last``
    (gain, bias) scales the last layer's weights and sets its bias (None keeps it); ``meta`` goes to
    ``build_meta`` (spectrogram, events)."""
    cfg = cfg or vars(Config().model) | SMALL | {"depth": depth, "base_width": width}
    if seed is not None:
        torch.manual_seed(seed)
    binary = len(classes) == 2
    model = create_model(cfg, channels, 1 if binary else len(classes)).eval()
    if last is not None:
        conv = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        with torch.no_grad():
            conv.weight.mul_(last[0])
            if last[1] is not None:
                conv.bias.fill_(last[1])
    mean, std = norm or ((0.5,) * channels, (0.25,) * channels)
    spec = InputSpec(channels, None if mode == "pad" else tuple(size or (32, 32)), mode, 2 ** cfg["depth"], mean, std)
    built = build_meta(cfg, list(classes), binary, colours or COLOURS[:len(classes)], spec, 0.5, **meta)
    return save_model_file(folder / f"{name or mode}.safetensors", model, built)


def write_images(folder: Path, n: int = 3, size: tuple[int, int] = (40, 56)) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def dead_pid() -> int:
    """The id of a process that has ended."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def write_wav(path: Path, seconds: float = 3.0, sr: int = 22050) -> Path:
    path.write_bytes(wav_bytes(seconds, sr))
    return path


def make_review(tmp: Path, events: int = 0) -> Review:
    """A review of a 3 s song: three events, or ``events`` evenly spread ones."""
    events = [Event(0.2, 0.5, 2000.0, 4000.0, "bird", 0.9), Event(1.0, 1.4, 2500.0, 3500.0, "bird", 0.7),
              Event(2.0, 2.3, None, None, "bird", 0.6)] if not events else \
        [Event(k * 2.9 / events, k * 2.9 / events + 0.05, None, None, "bird", 0.5) for k in range(events)]
    return create_review(tmp / "reviews", "song", write_wav(tmp / "song.wav"), events, {"name": "m"},
                         {"sample_rate": 22050}, ["background", "bird"])


def audio_model(tmp: Path, bias: float = 0.0) -> Path:
    """A small untrained spectrogram model; ``bias`` on its last layer makes it see sound everywhere (>0)."""
    from unetseg.audio.spectrogram import SpectrogramConfig

    return tiny_model_file(tmp, "pad", name="birds", channels=1, classes=("background", "bird"),
                           colours=[(0, 0, 0), (255, 200, 0)], norm=((0.3,), (0.2,)), last=(1.0, bias),
                           spectrogram=SpectrogramConfig().to_dict(), events="box")


def wav_bytes(seconds: float = 2.0, sr: int = 22050, seed: int = 0) -> bytes:
    """A recording of 3 kHz tones in noise (``seed`` makes other bytes: a review is found by its bytes)."""
    t = np.arange(int(seconds * sr)) / sr
    noise = 0.01 * np.random.default_rng(seed).standard_normal(len(t))
    y = 0.3 * np.sin(2 * np.pi * 3000 * t) * (np.sin(2 * np.pi * 2 * t) > 0) + noise
    buf = io.BytesIO()
    sf.write(buf, y.astype(np.float32), sr, format="WAV")
    return buf.getvalue()


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def shared(name: str) -> Path:
    """A folder of ../shared/data; missing data fails under CI and skips elsewhere."""
    path = SHARED_DATA / name
    if not path.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{path} is missing; CI must provide ../shared/data")
        pytest.skip(f"{path} not available")
    return path


def write_binary_dataset(root: Path, counts: dict[str, int], size: int = 64, seed: int = 0) -> Path:
    """A folder dataset of synthetic tonal-call spectrograms with 0/255 masks."""
    from unetseg.core.fileio import write_png
    from unetseg.data.demo import tonal_call_image

    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for i in range(n):
            image, mask = tonal_call_image(rng, size, size)
            write_png(root / split / "images" / f"{split}{i}.png", image)
            write_png(root / split / "masks" / f"{split}{i}.png", mask * 255)
    return root


WHISTLE_RATE = 22050


def whistles(path: Path, seconds: float, at: list[float]) -> tuple[Path, list[Event]]:
    """A recording of noise with a 3 kHz whistle of 0.2 s at each of ``at`` (s), and its boxes."""
    rng = np.random.default_rng(len(at))
    t = np.arange(int(seconds * WHISTLE_RATE)) / WHISTLE_RATE
    y = 0.01 * rng.standard_normal(len(t))
    for a in at:
        y += 0.3 * np.sin(2 * np.pi * 3000 * t) * ((t >= a) & (t < a + 0.2))
    sf.write(path, y.astype(np.float32), WHISTLE_RATE)
    return path, [Event(a, a + 0.2, 2500.0, 3500.0, "call") for a in at]
