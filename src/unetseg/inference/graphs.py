"""The graphs the engine runs beside torch: ONNX fp32 and static int8, built once per model and cached.

The one recipe for each: ``export_onnx`` (torch.onnx dynamo) and ``quantize_checked`` (onnxruntime static
int8 QDQ, then the IoU of its masks against fp32's). The engine caches graphs of logits of normalised
input under the model's digest, each with a sidecar holding the graph's own SHA-256, so the cost is paid
once per model and a corrupt or foreign graph is rebuilt; ``unetseg export`` writes graphs of raw pixels
with the same functions.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import atomic_write, cache_root, write_json
from unetseg.evaluation.pixel_scores import mask_agreement
from unetseg.inference.calibration import AGREEMENT_FLOOR, calibration_batches
from unetseg.inference.classes import activate, to_classes
from unetseg.models.modelfile import LoadedModel

log = logging.getLogger(__name__)


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


def example_input(loaded: LoadedModel, batch: int = 2) -> torch.Tensor:
    spec = loaded.input_spec
    size = spec.size or (spec.divisor * 4, spec.divisor * 6)
    return torch.rand(batch, spec.channels, *size) * 255



class OnnxBackend:
    """ONNX Runtime on the CPU."""

    def __init__(self, path: Path, name: str, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        # the memory pattern is traced on the first run and planned on the second: that run took 1.3x a steady
        # one at 1024 px, with no steady gain here (its arena alone serves every run after the first)
        options.enable_mem_pattern = False
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.name = name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().cpu().float().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input: x})[0])


def backend_agreement(reference: Callable[[torch.Tensor], torch.Tensor],
                      other: Callable[[torch.Tensor], torch.Tensor], loaded: LoadedModel, samples: list[np.ndarray],
                      probabilities: bool = False) -> float:
    """IoU of ``other``'s masks against ``reference``'s on ``samples`` (each (1, C, H, W) input), pooled over
    the samples' pixels (they may differ in size). The callables return logits, or ``probabilities``."""
    masks_a, masks_b = [], []
    for x in samples:
        t = torch.from_numpy(x)
        for run, masks in ((reference, masks_a), (other, masks_b)):
            out = run(t).float()
            probs = (out if probabilities else activate(out, loaded.binary, head=loaded.head))[0, :loaded.outputs]
            masks.append(to_classes(probs.numpy(), loaded.binary, loaded.threshold))
    classes = 2 if loaded.binary else len(loaded.classes)
    return mask_agreement(np.concatenate([m.ravel() for m in masks_b]), np.concatenate([m.ravel() for m in masks_a]),
                          classes, loaded.binary)


def quantize_checked(fp32: Path, path: Path, samples: list[np.ndarray], loaded: LoadedModel,
                     threads: int | None = None, probabilities: bool = False) -> float:
    """Write the int8 copy of the ONNX graph ``fp32`` to ``path`` (calibrated on ``samples``); return the IoU
    of its masks against fp32's on those samples (graphs that return ``probabilities`` or logits)."""
    quantize_int8(fp32, path, samples)
    return backend_agreement(OnnxBackend(fp32, "onnxruntime", threads), OnnxBackend(path, "int8", threads), loaded,
                             samples, probabilities)


def graph_folder(loaded: LoadedModel) -> Path:
    return cache_root() / "graphs" / loaded.digest[:40]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# How each graph is made; a cached graph made another way is rebuilt.
RECIPES = {"fp32.onnx": "torch.onnx dynamo, opset 18, logits of normalised input",
           "int8.onnx": "onnxruntime quantize_static QDQ, per-channel s8 weights, u8 activations, MinMax over 32 "
                        "calibration images, first and last convolution in fp32"}


def _cached(path: Path, loaded: LoadedModel) -> dict[str, Any] | None:
    """The sidecar of a cached graph if the graph is intact, belongs to this model and was made by the
    current recipe, else None."""
    sidecar = path.with_name(path.name + ".json")
    if not path.is_file():
        return None
    try:
        info = json.loads(sidecar.read_text())
        if (info["model"] == loaded.digest and info["sha256"] == _sha256(path)
                and info.get("recipe") == RECIPES[path.name]):
            return info
    except (OSError, ValueError, KeyError, TypeError):
        pass
    log.warning("%s: cached graph is corrupt, not this model's or made another way; rebuilding it", path)
    return None


def _record(path: Path, loaded: LoadedModel, **extra: Any) -> dict[str, Any]:
    info = {"model": loaded.digest, "sha256": _sha256(path), "recipe": RECIPES[path.name], **extra}
    write_json(path.with_name(path.name + ".json"), info)
    return info


def fp32_graph(loaded: LoadedModel) -> Path:
    """The model's ONNX graph (logits of normalised input; dynamic batch, height and width), built once."""
    path = graph_folder(loaded) / "fp32.onnx"
    if _cached(path, loaded) is None:
        start = time.perf_counter()
        module = loaded.model.eval().to(memory_format=torch.contiguous_format)
        with torch.no_grad():
            export_onnx(module, example_input(loaded) / 255, path)
        _record(path, loaded, seconds=round(time.perf_counter() - start, 1))
    return path


def int8_graph(loaded: LoadedModel, calibration: str | Path | None = None, threads: int | None = None) -> Path:
    """The model's int8 graph, quantized once with calibration images; refused when its masks agree
    with fp32 at IoU below ``AGREEMENT_FLOOR`` on those images."""
    path = graph_folder(loaded) / "int8.onnx"
    info = _cached(path, loaded)
    if info is None and loaded.path is not None and not _IN_CHILD:
        _quantize_in_child(loaded.path, calibration, threads)  # calibration and quantization: the child's memory
        info = _cached(path, loaded)
    if info is None:
        samples = calibration_batches(loaded, calibration)
        agreement = quantize_checked(fp32_graph(loaded), path, samples, loaded, threads)
        info = _record(path, loaded, agreement_iou=round(agreement, 5), calibration_images=len(samples),
                       calibration=str(calibration or loaded.run_dir))
    if info["agreement_iou"] < AGREEMENT_FLOOR:
        raise UnetsegError(f"{loaded.path or 'model'}: int8 masks agree with fp32 at IoU {info['agreement_iou']:.3f} "
                           f"on {info['calibration_images']} calibration images, below the floor {AGREEMENT_FLOOR}; "
                           "use --backend onnxruntime or torch")
    return path


_IN_CHILD = False


def _quantize_in_child(model: Path, calibration: str | Path | None, threads: int | None) -> None:
    """Build the int8 graph of the model file ``model`` in a child process (``python -m
    unetseg.inference.graphs``): the caller's peak memory never holds the calibration and quantization."""
    import subprocess
    import sys

    argv = [sys.executable, "-m", "unetseg.inference.graphs", str(model), str(calibration or ""), str(threads or 0)]
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()] or [f"exit {done.returncode}"]
        raise UnetsegError(lines[-1].removeprefix("error: "))


if __name__ == "__main__":  # the child of _quantize_in_child
    import sys

    from unetseg.models.modelfile import load_model

    _IN_CHILD = True
    given, calib, count = sys.argv[1:4]
    try:
        int8_graph(load_model(given), calib or None, int(count) or None)
    except UnetsegError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
