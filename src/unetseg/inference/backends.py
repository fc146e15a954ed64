"""Backends run batches of normalised images (N, C, H, W) and return logits; ``create_backend`` builds
the one the options name, or for ``auto`` the fastest one here whose masks agree with fp32.

ONNX graphs (fp32, int8) come from ``graphs``, built once per model.
The auto probe's choice is cached per machine, model, input shape and thread count.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any, Protocol

import numpy as np
import torch

from unetseg.core.errors import UnetsegError
from unetseg.core.machine import cached_probe, machine_key, probe_path, rates_in_turns
from unetseg.data.images import read_image
from unetseg.data.transforms import normalize
from unetseg.inference.calibration import AGREEMENT_FLOOR, calibration_images
from unetseg.inference.graphs import OnnxBackend, backend_agreement, fp32_graph, int8_graph
from unetseg.inference.options import InferenceOptions
from unetseg.models.modelfile import LoadedModel

log = logging.getLogger(__name__)


class Backend(Protocol):
    name: str

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...


class TorchBackend:
    """Eager PyTorch in channels_last, batch norm folded into the convolutions; ``bf16``: autocast to
    bfloat16 (CPU or CUDA)."""

    def __init__(self, model: torch.nn.Module, device: torch.device, bf16: bool = False) -> None:
        self.device, self.bf16 = device, bf16
        self.name = "torch-bf16" if bf16 else "torch"
        # A copy (folding makes one): the loaded model stays as it is (contiguous, unfused) for exports.
        self.model = fold_batch_norm(model.eval()).to(device).to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(x).float()


def fold_batch_norm(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the eval-mode model with each convolution + batch norm pair folded into one convolution
    (the same function, fewer passes over memory: 25% faster in bf16 on the bird model); an unfolded copy
    when the model cannot be traced."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model)  # works on a copy
    except Exception as e:  # tracing can fail in many ways; the model then runs unfolded
        log.debug("batch norm not folded: %s", e)
        return copy.deepcopy(model)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise UnetsegError(f"--device {device!r}: not a device (cpu, cuda, cuda:1 or auto)") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise UnetsegError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
    return resolved


# ---------------------------------------------------------------------------------------------- choice


def build(name: str, loaded: LoadedModel, options: InferenceOptions, device: torch.device) -> Backend:
    """The backend called ``name`` (not auto)."""
    if name.startswith("onnxruntime") and device.type != "cpu":
        raise UnetsegError(f"--backend {name} runs on the CPU; use --device cpu or --backend torch")
    if name == "torch":
        return TorchBackend(loaded.model, device)
    if name == "torch-bf16":
        return TorchBackend(loaded.model, device, bf16=True)
    if name == "onnxruntime":
        return OnnxBackend(fp32_graph(loaded), name, options.threads)
    if name == "onnxruntime-int8":
        return OnnxBackend(int8_graph(loaded, options.calibration, options.threads), name, options.threads)
    raise UnetsegError(f"unknown backend {name!r}")


def create_backend(loaded: LoadedModel, options: InferenceOptions, shape: tuple[int, int, int, int],
                   probe: tuple[int, int, int, int] | None = None) -> Backend:
    """The backend of ``options``; for ``auto`` the fastest here for inputs of ``shape`` (N, C, H, W), ranked on
    batches of ``probe`` (default: ``shape``; the engine passes the largest part of the batch that four
    backends alive at once can run within the memory budget): backends rank by batch, as they run.

    A backend that cannot be built (onnxruntime missing, a failed export or quantization) is left out
    with one warning line, falling back to torch.
    """
    if options.threads:
        torch.set_num_threads(options.threads)
    device = resolve_device(options.device)
    if options.backend != "auto":
        return build(options.backend, loaded, options, device)
    if device.type == "cuda":
        return TorchBackend(loaded.model, device)
    choice, probed = _probe(loaded, options, device, probe or shape)
    backend = probed or _try_build(choice, loaded, options, device)
    return backend if backend is not None else TorchBackend(loaded.model, device)


def _try_build(name: str, loaded: LoadedModel, options: InferenceOptions, device: torch.device) -> Backend | None:
    try:
        return build(name, loaded, options, device)
    except (UnetsegError, ImportError) as e:
        log.warning("backend %s unavailable (%s); falling back", name, " ".join(str(e).split())[:200])
        return None


def _probe(loaded: LoadedModel, options: InferenceOptions, device: torch.device,
           shape: tuple[int, int, int, int]) -> tuple[str, Backend | None]:
    """The name of the fastest backend (from the cache when probed before) and, when just probed, the
    backend itself."""
    threads = options.threads or torch.get_num_threads()
    try:
        machine = machine_key(threads)
    except ImportError:
        return "torch", None
    candidates: dict[str, Backend] = {}

    def measure() -> dict[str, Any]:
        start = time.perf_counter()
        calibration = calibration_images(loaded, options.calibration)
        inputs = _probe_inputs(loaded, shape, options.calibration)
        reference = TorchBackend(loaded.model, device)
        candidates["torch"] = reference
        agreement: dict[str, float] = {}
        for name in ("torch-bf16", "onnxruntime", "onnxruntime-int8"):
            if name == "onnxruntime-int8" and not calibration:
                continue
            backend = _try_build(name, loaded, options, device)
            if backend is None:
                continue
            if name == "torch-bf16":
                agreement[name] = backend_agreement(reference, backend, loaded, [x[None] for x in inputs.numpy()])
                if agreement[name] < AGREEMENT_FLOOR:
                    continue
            candidates[name] = backend
        rates = rates_in_turns(candidates, inputs)
        return {"choice": max(rates, key=rates.__getitem__), "images_per_s": {k: round(v, 2) for k, v in rates.items()},
                "agreement_iou": agreement, "shape": list(shape), "machine": machine, "model": loaded.digest,
                "seconds": round(time.perf_counter() - start, 1)}

    key = [machine, loaded.digest, list(shape), options.calibration]
    result, measured = cached_probe("backends", key, measure, valid=lambda r: isinstance(r["choice"], str))
    choice = str(result["choice"])
    if not measured:
        return choice, None
    log.info("backend auto: %s (%s images/s of %s; probed once, cached in %s)", choice,
             ", ".join(f"{k} {v:.1f}" for k, v in result["images_per_s"].items()), "x".join(map(str, shape[1:])),
             probe_path("backends", key))
    return choice, candidates[choice]


def _probe_inputs(loaded: LoadedModel, shape: tuple[int, int, int, int], folder: str | None) -> torch.Tensor:
    """A batch of ``shape``: calibration images where the model has them (laid side by side to fill each
    input, as spectrogram windows are wider than the training windows), else noise."""
    n, channels, height, width = shape
    spec = loaded.input_spec
    files = iter(calibration_images(loaded, folder, limit=4 * n))
    batch = []
    generator = torch.Generator().manual_seed(0)
    for _ in range(n):
        canvas = np.zeros((height, width, channels), np.float32)
        left = 0
        while left < width and (f := next(files, None)) is not None:
            image = read_image(f, spec.channels)[:height, : width - left]
            canvas[: image.shape[0], left:left + image.shape[1]] = image
            left += image.shape[1]
        if left:
            batch.append(normalize(canvas, spec.mean, spec.std))
        else:
            batch.append(torch.randn(shape[1:], generator=generator))
    return torch.stack(batch)
