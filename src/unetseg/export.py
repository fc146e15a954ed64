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
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import UnetsegError
from .fileio import atomic_write, check_output_dir, write_json
from .guard import check_outputs
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
        # The exporter narrates each step on stdout and through its libraries' loggers.
        quiet = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir", "torch.onnx")]
        levels = [q.level for q in quiet]
        for q in quiet:
            q.setLevel(logging.WARNING)
        try:
            with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch's own deprecations, not the user's
                program = torch.onnx.export(module, (example,), None, input_names=["image"],
                                            output_names=["probabilities"],
                                            dynamo=True, dynamic_shapes=(dims,), opset_version=opset,
                                            verbose=False)
        finally:
            for q, level in zip(quiet, levels, strict=True):
                q.setLevel(level)
        program.save(str(tmp))

    return _write_or_fail(path, write, "ONNX export")


def quantize_int8(fp32: Path, path: Path, samples: list[np.ndarray]) -> Path:
    """Write a static int8 (QDQ) copy of the ONNX graph ``fp32``: per-channel int8 weights, uint8
    activations whose ranges come from ``samples`` (inputs of the graph, each (1, C, H, W) float32)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not samples:
        raise UnetsegError("int8 quantization needs calibration images")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self.items, None)
            return None if item is None else {"image": item}

    def write(tmp: Path) -> None:
        prepared = tmp.with_name(tmp.name + ".pre.onnx")
        try:
            # Symbolic shape inference gives up on our dynamic sizes; ONNX's own inference is enough here.
            quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
            quantize_static(str(prepared), str(tmp), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                            nodes_to_exclude=_edge_convolutions(prepared))
        finally:
            prepared.unlink(missing_ok=True)

    return _write_or_fail(path, write, "int8 quantization")


def _edge_convolutions(path: Path) -> list[str]:
    """Names of the convolutions that read the graph's input or write its output: kept in fp32, as is
    usual, since the raw input and the logits suffer most from 8-bit ranges (the rest is most of the work)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inputs = {i.name for i in graph.input}
    producers = {out: node for node in graph.node for out in node.output}
    edge = [n.name for n in graph.node if n.op_type == "Conv" and inputs & set(n.input)]
    # The last convolution: walk back from the output through shape-preserving nodes.
    name = graph.output[0].name
    while name in producers:
        node = producers[name]
        if node.op_type in ("Conv", "ConvTranspose"):
            edge.append(node.name)
            break
        name = node.input[0]
    return edge


def _write_or_fail(path: Path, write: Callable[[Path], None], what: str) -> Path:
    """``atomic_write``, with any failure of the exporting library as one line."""
    try:
        return atomic_write(path, write)
    except UnetsegError:
        raise
    except Exception as e:
        raise UnetsegError(f"{what} failed: {type(e).__name__}: {' '.join(str(e).split())[:300]}") from e


def export_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    traced = torch.jit.trace(module, example, check_trace=False)
    return atomic_write(path, lambda p: traced.save(str(p)))


@dataclass
class ExportResult:
    path: Path
    max_abs_diff: float  # against torch (int8: of probabilities, for information)
    agreement_iou: float | None = None  # int8: IoU of its masks against fp32 masks on the calibration images


def example_input(loaded: LoadedModel, batch: int = 2) -> torch.Tensor:
    spec = loaded.input_spec
    size = spec.size or (spec.divisor * 4, spec.divisor * 6)
    return torch.rand(batch, spec.channels, *size) * 255


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
    check_outputs([out, out.with_name(out.name + ".json")], [loaded.path, calibration], overwrite)
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


def _export_int8(loaded: LoadedModel, module: nn.Module, out: Path, calibration: str | Path | None) -> float:
    """Write the int8 graph to ``out``; return the IoU of its masks against fp32 masks on the calibration
    images, refusing (and removing it) below the floor."""
    from .inference.calibration import AGREEMENT_FLOOR, calibration_batches
    from .inference.outputs import to_classes
    from .metrics import mask_agreement

    samples = calibration_batches(loaded, calibration, raw=True)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(module, example_input(loaded), Path(tmp) / "fp32.onnx")
        quantize_int8(fp32, out, samples)
        masks = [np.stack([to_classes(run_exported(path, "onnx", x)[0], loaded.binary, loaded.threshold)
                           for x in samples]) for path in (fp32, out)]
    agreement = mask_agreement(masks[1], masks[0], 2 if loaded.binary else len(loaded.classes), loaded.binary)
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
