"""Export to ONNX or TorchScript with input normalisation and the output activation inside the graph.

The exported graph takes raw pixels - float32 (N, C, H, W) in 0..255 - and returns class probabilities
(N, classes, H, W): sigmoid for binary models (one channel), softmax otherwise. Batch, height and width
are dynamic (height and width must divide by the model's stride, as in training).
"""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import atomic_write, check_output_dir, write_json
from unetseg.core.guard import check_outputs, remove_stale_temps
from unetseg.inference.calibration import AGREEMENT_FLOOR, calibration_batches
from unetseg.inference.classes import activate
from unetseg.inference.graphs import example_input, export_onnx, quantize_checked
from unetseg.models.modelfile import LoadedModel, load_model

log = logging.getLogger(__name__)
FORMATS = ("onnx", "torchscript")


class RawPixelModel(nn.Module):
    """Model + normalisation (pixels / 255, minus mean, over std) + activation (with the instance head: its heat
    probability and edge distances after the class probabilities)."""

    def __init__(self, loaded: LoadedModel) -> None:
        super().__init__()
        spec = loaded.input_spec
        self.model = loaded.model
        self.binary, self.head = loaded.binary, loaded.head
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1) * 255)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits = self.model((image - self.mean) / self.std)
        return activate(logits, self.binary, axis=1, head=self.head)


def export_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    traced = torch.jit.trace(module, example, check_trace=False)
    return atomic_write(path, lambda p: traced.save(str(p)))


@dataclass
class ExportResult:
    path: Path
    max_abs_diff: float  # against torch (int8: of probabilities, for information)
    agreement_iou: float | None = None  # int8: IoU of its masks against fp32 masks on the calibration images


def export(model: str | Path | LoadedModel, output: str | Path | None = None, fmt: str = "onnx",
           overwrite: bool = False, int8: bool = False, calibration: str | Path | None = None) -> ExportResult:
    """Export a model file; check the export against torch on a random input of another shape.

    ``int8``: ONNX with static int8 quantization calibrated on ``calibration`` images (default: the
    training split recorded in the model's run), refused when its masks agree with fp32 below IoU 0.98.
    """
    if fmt not in FORMATS:
        raise UnetsegError(f"unknown export format {fmt!r} (choose {', '.join(FORMATS)})")
    if int8 and fmt != "onnx":
        raise UnetsegError("int8 export needs the onnx format")
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    loaded.model.eval().to(memory_format=torch.contiguous_format)
    if output is None:
        if isinstance(model, LoadedModel):
            raise UnetsegError("give an output path")
        suffix = ".int8.onnx" if int8 else ".onnx" if fmt == "onnx" else ".torchscript.pt"
        output = Path(model).with_suffix(suffix)
    out = Path(output)
    check_output_dir(out.parent)
    record_file = out.with_name(out.name + ".json")
    check_outputs([out, record_file], [loaded.path, calibration], overwrite, owned=_exported(record_file))
    remove_stale_temps([out.parent])  # what an export killed here (kill -9) left half-written
    module = RawPixelModel(loaded).eval()
    agreement = None
    with torch.no_grad():
        if int8:
            agreement = _export_int8(loaded, module, out, calibration)
        elif fmt == "onnx":
            export_onnx(module, example_input(loaded), out)
        else:
            export_torchscript(module, example_input(loaded), out)
        check = example_input(loaded, batch=3)
        expected = module(check).numpy()
    got = run_exported(out, fmt, check.numpy())
    diff = float(np.abs(got - expected).max())
    record = {"format": fmt, "input": "float32 NCHW pixels 0-255", "output": "probabilities",
              "max_abs_diff_vs_torch": diff}
    if int8:
        record |= {"quantization": "static int8 QDQ, per-channel weights", "agreement_iou_vs_fp32": agreement}
    write_json(out.with_name(out.name + ".json"), {**loaded.meta, "export": record})
    return ExportResult(out, diff, agreement)


def _exported(record_file: Path) -> list[Path]:
    """The files an earlier export recorded as its own: the graph and its ``.json`` record, when the record is
    one unetseg wrote (an ``export`` entry); none otherwise, so ``--overwrite`` replaces only our exports."""
    try:
        record = json.loads(record_file.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(record, dict) or not isinstance(record.get("export"), dict):
        return []
    return [record_file, record_file.with_name(record_file.name[: -len(".json")])]


def _export_int8(loaded: LoadedModel, module: nn.Module, out: Path, calibration: str | Path | None) -> float:
    """Write the int8 graph to ``out`` (the engine's recipe, on the raw-pixel graph); return the IoU of its masks
    against fp32 masks on the calibration images, refusing (and removing it) below the floor."""
    samples = calibration_batches(loaded, calibration, raw=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(module, example_input(loaded), Path(tmp) / "fp32.onnx")
        agreement = quantize_checked(fp32, out, samples, loaded, probabilities=True)
    if agreement < AGREEMENT_FLOOR:
        out.unlink(missing_ok=True)
        raise UnetsegError(f"{loaded.path or out}: int8 masks agree with fp32 at IoU {agreement:.3f} on "
                           f"{len(samples)} calibration images, below the floor {AGREEMENT_FLOOR}; keep fp32")
    return agreement


def run_exported(path: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: x})[0]
    module = torch.jit.load(str(path))
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()
