"""The inference engine: backends agree with torch eager, graphs are cached and rebuilt when corrupt,
auto picks and caches a backend, and the package has no import circle."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from unetseg.core.config import Config
from unetseg.core.errors import UnetsegError
from unetseg.evaluation.pixel_scores import mask_agreement
from unetseg.inference import Engine, ImageDataset, InferenceOptions
from unetseg.inference import backends as backends_module
from unetseg.inference import calibration as calibration_module
from unetseg.inference import graphs as graphs_module
from unetseg.models.modelfile import load_model
from unetseg.prediction.postprocess import to_mask

SRC = Path(__file__).resolve().parents[1] / "src" / "unetseg"


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


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny classic U-Net trained for five epochs on synthetic discs, in a run folder (so int8 finds
    its training split for calibration)."""
    from unetseg import train

    root = tmp_path_factory.mktemp("engine")
    data = write_blob_dataset(root / "calls", {"train": 24, "valid": 6, "test": 6})
    result = train(Config.from_dict({
        "data": {"path": str(data), "size": [64, 64], "workers": 0},
        "model": {"arch": "classic", "depth": 3, "base_width": 8, "dropout": 0.0},
        "train": {"epochs": 5, "batch_size": 8, "lr": 3e-3, "runs_dir": str(root / "runs"), "progress": False,
                  "patience": 0},
    }))
    return result.best_model


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UNETSEG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _masks(engine: Engine, images: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    dataset = ImageDataset(images, engine.loaded.input_spec)
    out = [(to_mask(p, engine.loaded), p.numpy()) for _, p in engine.run(dataset)]
    return np.stack([m for m, _ in out]), np.stack([p for _, p in out])


@pytest.mark.slow
def test_every_backend_gives_the_masks_of_torch_eager(trained: Path, cache: Path) -> None:
    loaded = load_model(trained)
    images = sorted((trained.parents[3] / "calls" / "test" / "images").glob("*.png"))
    reference, ref_probs = _masks(Engine(loaded, InferenceOptions(backend="torch")), images)
    assert 0.02 < reference.mean() < 0.9  # a model that found calls, so agreement means something
    ort_masks, ort_probs = _masks(Engine(loaded, InferenceOptions(backend="onnxruntime")), images)
    assert np.abs(ort_probs - ref_probs).max() < 1e-4
    assert mask_agreement(ort_masks, reference, 2, True) > 0.999
    for name in ("torch-bf16", "onnxruntime-int8"):
        masks, _ = _masks(Engine(loaded, InferenceOptions(backend=name)), images)
        assert mask_agreement(masks, reference, 2, True) >= calibration_module.AGREEMENT_FLOOR, name
    recorded = json.loads((graphs_module.graph_folder(loaded) / "int8.onnx.json").read_text())
    print(f"int8 agreement with fp32 on the calibration images: {recorded['agreement_iou']}")
    assert recorded["agreement_iou"] >= calibration_module.AGREEMENT_FLOOR and recorded["calibration_images"] == 24


@pytest.mark.slow
def test_graph_cache_is_reused_and_rebuilt_when_corrupt_or_foreign(trained: Path, cache: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING", logger="unetseg")
    loaded = load_model(trained)
    first = graphs_module.fp32_graph(loaded)
    stamp = first.stat().st_mtime_ns
    assert graphs_module.fp32_graph(loaded).stat().st_mtime_ns == stamp  # reused, not exported again
    first.write_bytes(first.read_bytes()[:1000])  # truncated
    rebuilt = graphs_module.fp32_graph(loaded)
    assert "rebuilding it" in caplog.text
    x = torch.rand(1, 1, 64, 64)
    expected = Engine(loaded, InferenceOptions(backend="torch")).backend(x)
    got = graphs_module.OnnxBackend(rebuilt, "onnxruntime")(x)
    assert torch.allclose(got, expected, atol=1e-4)
    sidecar = rebuilt.with_name("fp32.onnx.json")
    info = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**info, "model": "0" * 64}))  # a graph claiming another model
    caplog.clear()
    graphs_module.fp32_graph(loaded)
    assert "rebuilding it" in caplog.text
    assert json.loads(sidecar.read_text())["model"] == loaded.digest


@pytest.mark.slow
def test_int8_below_the_agreement_floor_is_refused(trained: Path, cache: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graphs_module, "AGREEMENT_FLOOR", 1.01)
    with pytest.raises(UnetsegError, match="below the floor"):
        Engine(load_model(trained), InferenceOptions(backend="onnxruntime-int8"))


@pytest.mark.slow
def test_int8_without_calibration_images_says_how(trained: Path, cache: Path, tmp_path: Path) -> None:
    loose = tmp_path / "model.safetensors"  # a model file outside its run folder
    loose.write_bytes(trained.read_bytes())
    with pytest.raises(UnetsegError, match="--calibration DIR"):
        Engine(load_model(loose), InferenceOptions(backend="onnxruntime-int8"))
    calib = trained.parents[3] / "calls" / "valid" / "images"
    engine = Engine(load_model(loose), InferenceOptions(backend="onnxruntime-int8", calibration=str(calib)))
    assert engine.backend_name == "onnxruntime-int8"


@pytest.mark.slow
def test_auto_probes_once_and_caches_its_choice(trained: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = load_model(trained)
    engine = Engine(loaded, InferenceOptions())
    probes = list((cache / "probes" / "backends").glob("*.json"))
    assert len(probes) == 1
    record = json.loads(probes[0].read_text())
    assert record["choice"] == engine.backend_name
    assert {"torch", "onnxruntime"} <= set(record["images_per_s"])
    assert record["machine"]["capability"] == torch.backends.cpu.get_cpu_capability()
    # ranked at the batch the work runs, as predict and detect run it (not one image at a time)
    assert record["shape"][0] == InferenceOptions().batch_size

    def no_probe(*_: object) -> float:
        raise AssertionError("probed again")

    monkeypatch.setattr(backends_module, "rates_in_turns", no_probe)
    assert Engine(loaded, InferenceOptions()).backend_name == engine.backend_name


def test_auto_falls_back_to_torch_with_one_warning(trained: Path, cache: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: object, **__: object) -> None:
        raise UnetsegError("ONNX export failed: simulated")

    caplog.set_level("WARNING", logger="unetseg")
    monkeypatch.setattr(backends_module, "fp32_graph", broken)
    monkeypatch.setattr(backends_module, "int8_graph", broken)
    engine = Engine(load_model(trained), InferenceOptions())
    assert engine.backend_name.startswith("torch")
    assert "backend onnxruntime unavailable" in caplog.text


def test_bad_inference_options_are_one_line_errors() -> None:
    for bad, needle in ((dict(backend="tpu"), "--backend: .tpu. is not one of"), (dict(batch_size=0), "--batch-size"),
                        (dict(threads=0), "--threads"), (dict(tile_overlap=1.0), "--tile-overlap"),
                        (dict(tile=-16), "--tile")):
        with pytest.raises(UnetsegError, match=needle):
            InferenceOptions(**bad)
    if not torch.cuda.is_available():
        with pytest.raises(UnetsegError, match="no CUDA GPU"):
            backends_module.resolve_device("cuda")


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = ["unetseg", *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its file (lazy imports included)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.add(full if full in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name and not (m == "unetseg" and name.startswith("unetseg."))}


def test_no_import_circle() -> None:
    """No module reaches itself through the modules it imports (the root package, which only re-exports
    lazily, aside)."""
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join([*trail[trail.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


@pytest.mark.slow
def test_every_module_imports_alone() -> None:
    """Each module in a fresh interpreter (forked after the third-party libraries are loaded)."""
    names = sorted(_modules())
    script = (
        "import os, sys, importlib\n"
        "import numpy, torch, cv2, albumentations, lightning, onnx, yaml\n"
        "bad = []\n"
        "for name in sys.argv[1:]:\n"
        "    pid = os.fork()\n"
        "    if pid == 0:\n"
        "        try:\n"
        "            importlib.import_module(name)\n"
        "        except BaseException as e:\n"
        "            print(name, type(e).__name__, e, file=sys.stderr)\n"
        "            os._exit(1)\n"
        "        os._exit(0)\n"
        "    if os.waitpid(pid, 0)[1]:\n"
        "        bad.append(name)\n"
        "print(' '.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr[-2000:]


@pytest.mark.slow
def test_export_int8_and_predict_record_what_ran(trained: Path, cache: Path, tmp_path: Path, capsys) -> None:
    from unetseg.cli import main

    copy_dir = tmp_path / "run"  # export writes beside the model: work on a copy of its run folder
    shutil.copytree(trained.parents[1], copy_dir)
    model = copy_dir / "weights" / trained.name
    assert main(["export", "--model", str(model), "--int8"]) == 0
    out = capsys.readouterr().out
    assert "masks agree with fp32 at IoU" in out
    sidecar = json.loads(model.with_suffix(".int8.onnx").with_name(model.stem + ".int8.onnx.json").read_text())
    assert sidecar["export"]["agreement_iou_vs_fp32"] >= 0.98
    images = trained.parents[3] / "calls" / "test" / "images"
    assert main(["predict", "--model", str(model), "--input", str(images), "--output", str(tmp_path / "p"),
                 "--backend", "onnxruntime", "--threshold", "0.4", "--min-size", "3"]) == 0
    used = json.loads((tmp_path / "p" / "inference.json").read_text())
    assert used["backend"] == "onnxruntime" and used["options"]["backend"] == "onnxruntime"
    assert used["postprocess"]["threshold"] == 0.4 and used["postprocess"]["min_size"] == 3
    assert used["model_sha256"] == load_model(model).digest and used["inputs"] == 6
    assert main(["export", "--model", str(model), "--int8", "--format", "torchscript"]) == 2


@pytest.mark.parametrize("field, value, needle", [
    ("model.depth", 100, "model.depth: 100 is out of range"),
    ("model.base_width", 10**6, "model.base_width"),
    ("input.size", [-5, 64], "'input.size'"),
    ("input.channels", -1, "'input.channels'"),
    ("input", None, "'input' is missing"),
    ("format_version", "x", "'format_version' must be a positive integer"),
    ("input.std", [0.0], "'input.std' and input.mean must lie in"),
    ("input.std", [1e-308], "'input.std' and input.mean must lie in"),
    ("input.mean", [1e308], "'input.std' and input.mean must lie in"),
    ("threshold", 5, "'threshold' must lie between 0 and 1"),
])
def test_crafted_model_file_fields_are_one_line_errors(trained: Path, tmp_path: Path, capsys,
                                                       field: str, value: object, needle: str) -> None:
    """A model file whose metadata was edited fails at once, naming the field (depth 100 used to grow
    `predict` to 23 GB)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from unetseg.cli import main

    with safe_open(str(trained), framework="pt") as f:
        header = f.metadata()
    meta = json.loads(header["meta"])
    *parents, last = field.split(".")
    target = meta
    for key in parents:
        target = target[key]
    if value is None:
        del target[last]
    else:
        target[last] = value
    crafted = tmp_path / "crafted.safetensors"
    save_file(load_file(str(trained)), str(crafted), metadata={**header, "meta": json.dumps(meta)})
    for argv in (["info", str(crafted)], ["predict", "--model", str(crafted), "--input", str(tmp_path),
                                          "--output", str(tmp_path / "out")]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code != 0 and needle in err and "crafted.safetensors" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()
