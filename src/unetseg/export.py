"""Export to ONNX or TorchScript with input normalisation and the output activation inside the graph.

The exported graph takes raw pixels - float32 (N, C, H, W) in 0..255 - and returns class probabilities
(N, classes, H, W): sigmoid for binary models (one channel), softmax otherwise. Batch, height and width
are dynamic (height and width must divide by the model's stride, as in training).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import UnetsegError
from .fileio import atomic_write, write_json
from .modelfile import LoadedModel, load_model

log = logging.getLogger(__name__)
FORMATS = ("onnx", "torchscript")


class RawPixelModel(nn.Module):
    """Model + normalisation (pixels / 255, minus mean, over std) + activation."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        spec = loaded.input_spec
        self.model = loaded.model
        self.binary = loaded.binary
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1) * 255)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.model((image - self.mean) / self.std)
        return torch.sigmoid(logits) if self.binary else torch.softmax(logits, dim=1)


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, opset: int = 18) -> Path:
    dims = {0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC}

    def write(tmp: Path) -> None:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates each step on stdout
            program = torch.onnx.export(module, (example,), None, input_names=["image"], output_names=["probabilities"],
                                        dynamo=True, dynamic_shapes=(dims,), opset_version=opset,
                                        verbose=False)
        program.save(str(tmp))

    try:
        return atomic_write(path, write)
    except UnetsegError:
        raise
    except Exception as e:
        raise UnetsegError(f"ONNX export failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from e


def export_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    traced = torch.jit.trace(module, example, check_trace=False)
    return atomic_write(path, lambda p: traced.save(str(p)))


@dataclass
class ExportResult:
    path: Path
    max_abs_diff: float


def example_input(loaded: LoadedModel, batch: int = 2) -> torch.Tensor:
    spec = loaded.input_spec
    size = spec.size or (spec.divisor * 4, spec.divisor * 6)
    return torch.rand(batch, spec.channels, *size) * 255


def export(model: str | Path | LoadedModel, output: str | Path | None = None, fmt: str = "onnx",
           overwrite: bool = False) -> ExportResult:
    """Export a model file; check the export against torch on a random input of another shape."""
    if fmt not in FORMATS:
        raise UnetsegError(f"unknown export format {fmt!r} (choose {', '.join(FORMATS)})")
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    loaded.model.eval().to(memory_format=torch.contiguous_format)
    if output is None:
        if isinstance(model, LoadedModel):
            raise UnetsegError("give an output path")
        output = Path(model).with_suffix(".onnx" if fmt == "onnx" else ".torchscript.pt")
    out = Path(output)
    if out.exists() and not overwrite:
        raise UnetsegError(f"{out}: already exists; choose another --output or pass --overwrite")
    module = RawPixelModel(loaded).eval()
    with torch.no_grad():
        if fmt == "onnx":
            export_onnx(module, example_input(loaded), out)
        else:
            export_torchscript(module, example_input(loaded), out)
        check = example_input(loaded, batch=3)
        expected = module(check).numpy()
    got = run_exported(out, fmt, check.numpy())
    diff = float(np.abs(got - expected).max())
    write_json(out.with_name(out.name + ".json"), {**loaded.meta, "export": {"format": fmt, "input": "float32 NCHW "
               "pixels 0-255", "output": "probabilities", "max_abs_diff_vs_torch": diff}})
    return ExportResult(out, diff)


def run_exported(path: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    module = torch.jit.load(str(path))
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


class OnnxBackend:
    """Runs a loaded model's logits through ONNX Runtime (normalised input, as the torch model takes)."""

    def __init__(self, loaded: LoadedModel, threads: int | None = None) -> None:
        import onnxruntime as ort

        module = loaded.model.eval()  # logits of normalised inputs, exactly what the torch model computes
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        with tempfile.TemporaryDirectory() as tmp, torch.no_grad():
            path = export_onnx(module, example_input(loaded) / 255, Path(tmp) / "model.onnx")
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {self.name: x.contiguous().numpy()})[0])

