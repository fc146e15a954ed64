"""Tests of ``unetseg.inference.backends``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unetseg.core.errors import UnetsegError
from unetseg.evaluation.pixel_scores import mask_agreement
from unetseg.inference import Engine, ImageDataset, InferenceOptions
from unetseg.inference import backends as backends_module
from unetseg.inference import calibration as calibration_module
from unetseg.inference import graphs as graphs_module
from unetseg.models.modelfile import load_model
from unetseg.prediction.postprocess import to_mask


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


@pytest.mark.slow
def test_int8_is_quantized_in_a_child_process(trained: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 32: calibration and quantization never add to the predicting process's peak memory."""
    monkeypatch.setattr(graphs_module, "quantize_checked", lambda *a, **k: pytest.fail("quantized in this process"))
    path = graphs_module.int8_graph(load_model(trained))
    assert path.is_file() and json.loads(path.with_name("int8.onnx.json").read_text())["agreement_iou"] > 0.5


def test_the_memory_estimate_is_the_backends(trained: Path) -> None:
    """Issue 32: ONNX Runtime's arena keeps more of the layer outputs alive than torch (measured 0.34-0.49 of them
    against 0.16-0.19 for the built-in prior): its estimate is larger, so --max-memory holds for it too."""
    from unetseg.inference.footprint import LIVE_SHARE, MemoryGuard

    loaded = load_model(trained)
    spec = loaded.input_spec
    torch_guard = MemoryGuard(loaded.model, spec.channels, spec.divisor, backend="torch")
    onnx_guard = MemoryGuard(loaded.model, spec.channels, spec.divisor, backend="onnxruntime")
    weights = torch_guard.weights
    grown = (onnx_guard.estimate(1, 512, 512) - weights) / (torch_guard.estimate(1, 512, 512) - weights)
    assert grown == pytest.approx(LIVE_SHARE["onnxruntime"] / LIVE_SHARE["torch"], rel=1e-6) and grown > 1
    onnx_guard.use("torch")
    assert onnx_guard.estimate(1, 512, 512) == torch_guard.estimate(1, 512, 512)
