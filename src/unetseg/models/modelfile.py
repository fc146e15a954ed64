"""The model file: one safetensors file holding the weights and, in its header, JSON metadata with
everything prediction needs (architecture, channels, classes, input size, normalisation, threshold).

Loading parses JSON and tensors only; no pickle, no code from the file runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from unetseg.audio.settings import BUILTIN, PRIOR_FILE
from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import atomic_write
from unetseg.data.inputspec import InputSpec
from unetseg.instances.centres import has_head
from unetseg.models import create_model
from unetseg.models.factory import CLASSIC, output_stride
from unetseg.version import __version__

log = logging.getLogger(__name__)

FORMAT = "unetseg-model"
FORMAT_VERSION = 1


@dataclass
class LoadedModel:
    """A model ready for inference, with what its training decided about inputs and outputs."""

    model: nn.Module
    meta: dict[str, Any]
    path: Path | None = None  # the file it came from, if any
    _digest: str | None = field(default=None, repr=False)

    @property
    def digest(self) -> str:
        """SHA-256 of the metadata and weights: the key of everything derived from this model."""
        if self._digest is None:
            h = hashlib.sha256(json.dumps(self.meta, sort_keys=True).encode())
            for name, tensor in self.model.state_dict().items():
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
            self._digest = h.hexdigest()
        return self._digest

    @property
    def run_dir(self) -> Path | None:
        """The training run the file belongs to (``<run>/weights/<file>``), if it does."""
        if self.path is None or self.path.parent.name != "weights":
            return None
        run = self.path.resolve().parent.parent
        return run if (run / "dataset.json").is_file() else None

    @property
    def name(self) -> str:
        """How people call it: its run folder's name for a run's ``best``/``last`` file, else the file's stem."""
        if self.path is None:
            return "model"
        run = self.run_dir
        return run.name if run is not None and self.path.stem in ("best", "last") else self.path.stem

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def binary(self) -> bool:
        return bool(self.meta["binary"])

    @property
    def threshold(self) -> float:
        return float(self.meta.get("threshold", 0.5))

    @property
    def outputs(self) -> int:
        """The class maps the network outputs (1 for a binary model)."""
        return 1 if self.binary else len(self.classes)

    @property
    def head(self) -> bool:
        """Whether the network outputs the instance head after its class maps."""
        return has_head(self.meta["model"])

    @property
    def colours(self) -> list[tuple[int, int, int]]:
        return [tuple(c) for c in self.meta["colours"]]

    @property
    def input_spec(self) -> InputSpec:
        return InputSpec.from_dict(self.meta["input"])


def build_meta(model_cfg: dict, classes: list[str], binary: bool, colours: list, spec: InputSpec,
               threshold: float, spectrogram: dict[str, Any] | None = None,
               events: str | None = None) -> dict[str, Any]:
    """Everything prediction needs; ``spectrogram``: how audio became the training images, if it did;
    ``events``: "time" when they were painted from onset/offset annotations (decoded per column). Training
    adds its epoch and metrics under ``training`` as it saves each model file."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "unetseg_version": __version__,
        "model": dict(model_cfg),
        "classes": list(classes),
        "binary": binary,
        "colours": [list(map(int, c)) for c in colours],
        "input": spec.to_dict(),
        "threshold": threshold,
        "training": {},
        "spectrogram": spectrogram,
        "events": events,
    }


def save_model_file(path: str | Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write weights and metadata atomically."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    header = {"format": FORMAT, "meta": json.dumps(meta)}
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=header))


def model_path(path: str | Path) -> Path:
    """The file a ``--model``/``--init`` value names: ``builtin`` is the call prior shipped in the package."""
    if str(path) != BUILTIN:
        return Path(path)
    if not PRIOR_FILE.is_file():
        raise UnetsegError(f"{BUILTIN}: the built-in call prior ({PRIOR_FILE}) is not in this install; "
                           "'make prior' rebuilds it")
    return PRIOR_FILE


def read_meta(path: str | Path) -> dict[str, Any]:
    path = model_path(path)
    if not path.is_file():
        raise UnetsegError(f"{path}: model file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise UnetsegError(f"{path}: not a unetseg model file (not safetensors: {' '.join(str(e).split())})") from e
    if header.get("format") != FORMAT or "meta" not in header:
        raise UnetsegError(f"{path}: not a unetseg model file (safetensors without unetseg metadata)")
    if len(header["meta"]) > MAX_META_BYTES:
        raise UnetsegError(f"{path}: unetseg metadata of {len(header['meta'])} bytes (at most {MAX_META_BYTES})")
    try:
        meta = json.loads(header["meta"])
    except json.JSONDecodeError as e:
        raise UnetsegError(f"{path}: corrupt unetseg metadata ({e})") from e
    except RecursionError:
        raise UnetsegError(f"{path}: unetseg metadata nested too deeply to be a model's") from None
    check_meta(meta, path)
    return meta


MAX_META_BYTES = 1 << 20
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,79}$")  # architecture, encoder and window names


def validate_model_file(path: str | Path) -> tuple[dict[str, Any], nn.Module | None]:
    """The one check of a model file, shared by ``info``, ``load_model`` and every command: its metadata
    (``check_meta``), then the model it describes built without memory (on torch's meta device) and compared,
    tensor by tensor, with the shapes the file holds, then its size against the memory budget. Returns the
    metadata and the memory-less model (None for the few models that cannot be built without memory). Nothing
    is allocated for the weights before all of this passes."""
    from safetensors import safe_open

    from unetseg.core.budget import gib, memory_budget

    path = model_path(path)
    meta = read_meta(path)
    outputs = 1 if meta["binary"] else len(meta["classes"])
    with safe_open(str(path), framework="pt") as f:
        held = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 - not a dict
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 - not a dict
    odd = next((k for k, d in dtypes.items() if d not in WEIGHT_DTYPES), None)
    if odd is not None:
        raise UnetsegError(f"{path}: tensor {odd[:60]} has dtype {dtypes[odd]}, not one a model file holds "
                           f"({', '.join(WEIGHT_DTYPES)})")
    try:
        with torch.device("meta"):
            skeleton = create_model(meta["model"], int(meta["input"]["channels"]), outputs)
    except (RuntimeError, NotImplementedError) as e:
        # A few timm encoders (mix transformers) read tensor values while they are built; those are small
        # (mit_b5: 82 M parameters), so the file's own tensors stand in and load_state_dict checks the match.
        log.debug("%s: cannot build %s on the meta device (%s); checked at load", path, meta["model"]["arch"], e)
        return meta, None
    wanted = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    missing = sorted(set(wanted) - set(held))
    extra = sorted(set(held) - set(wanted))
    wrong = [k for k in wanted if k in held and held[k] != wanted[k]]
    if missing or extra or wrong:
        first = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}" if extra else
                 f"{wrong[0]} is {list(held[wrong[0]])}, the model needs {list(wanted[wrong[0]])}")
        raise UnetsegError(f"{path}: weights do not match the {meta['model']['arch']} model it describes ({first}; "
                           f"{len(missing)} missing, {len(extra)} unexpected, {len(wrong)} of another shape)")
    need = sum(t.numel() * 4 for t in skeleton.state_dict().values())
    if need > memory_budget():
        raise UnetsegError(f"{path}: its model needs {gib(need)} for the weights alone, over the memory budget of "
                           f"{gib(memory_budget())}")
    return meta, skeleton


WEIGHT_DTYPES = ("F32", "F16", "BF16", "F64", "I64", "I32")  # weights and BatchNorm's step counter
MAX_CLASSES, MAX_NAME = 256, 100  # masks are 8-bit; class names fit a table cell
MIN_STD, MAX_PIXEL = 1e-6, 65535.0  # input normalisation that keeps every output finite


def plain_name(text: str) -> bool:
    """A class name a mask legend, a Raven table and a CSV can hold: 1-100 characters, no control characters."""
    return 0 < len(text) <= MAX_NAME and not any(ord(c) < 32 or ord(c) == 127 or c in "\u2028\u2029\x85"
                                                 for c in text)


def check_meta(meta: Any, path: str | Path) -> None:
    """Check every field prediction reads before anything is built: a crafted or damaged file fails here
    with one line naming the field, not later with a traceback or a model that eats memory."""
    from unetseg.core.config import Config
    from unetseg.data.inputspec import RESIZE_MODES

    def bad(field: str, what: str) -> UnetsegError:
        return UnetsegError(f"{path}: model file field {field!r} {what}")

    if not isinstance(meta, dict):
        raise bad("meta", "is not a mapping")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad("format_version", f"must be a positive integer, not {version!r}")
    if version > FORMAT_VERSION:
        raise UnetsegError(f"{path}: made by a newer unetseg (format {version}); upgrade unetseg")
    for key in ("model", "classes", "binary", "input"):
        if key not in meta:
            raise bad(key, "is missing")
    if not isinstance(meta["model"], dict):
        raise bad("model", "is not a mapping")
    for key in ("arch", "encoder"):
        name = meta["model"].get(key)
        if name not in (None, "") and not (isinstance(name, str) and NAME.match(name)):
            raise bad(f"model.{key}", f"is not a name ({str(name)[:40]!r})")
    arch = str(meta["model"].get("arch", "")).lower()
    if arch != CLASSIC:
        from unetseg.models.factory import smp_architectures

        if arch not in smp_architectures():
            raise bad("model.arch", f"is not an architecture unetseg knows ({arch[:40]!r})")
        import segmentation_models_pytorch as smp

        if str(meta["model"].get("encoder")) not in smp.encoders.get_encoder_names():
            raise bad("model.encoder", f"is not an encoder unetseg knows ({str(meta['model'].get('encoder'))[:40]!r})")
    try:
        Config.from_dict({"model": meta["model"]}, "model")  # types, names and ranges of the model fields
    except UnetsegError as e:
        raise UnetsegError(f"{path}: model file field {str(e)}") from None
    classes = meta["classes"]
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise bad("classes", "must list at least two class names")
    if len(classes) > MAX_CLASSES:
        raise bad("classes", f"lists {len(classes)} classes (at most {MAX_CLASSES}: masks are 8-bit)")
    named = next((c for c in classes if not plain_name(c)), None)
    if named is not None:
        raise bad("classes", f"has a name {named[:40]!r} that is empty, over {MAX_NAME} characters or holds a tab, "
                  "line break or other control character")
    if not isinstance(meta["binary"], bool) or (meta["binary"] and len(classes) != 2):
        raise bad("binary", "must be true (with two classes) or false")
    spec = meta["input"]
    if not isinstance(spec, dict) or not {"channels", "mode", "divisor", "mean", "std"} <= set(spec):
        raise bad("input", "must hold channels, size, mode, divisor, mean and std")
    if spec["channels"] not in (1, 3) or isinstance(spec["channels"], bool):
        raise bad("input.channels", f"must be 1 or 3, not {spec['channels']!r}")
    size = spec.get("size")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and
                                 all(isinstance(v, int) and not isinstance(v, bool) and 16 <= v <= 8192
                                     for v in size)):
        raise bad("input.size", f"must be null or [height, width] between 16 and 8192, not {size!r}")
    if spec["mode"] not in RESIZE_MODES:
        raise bad("input.mode", f"must be one of {', '.join(RESIZE_MODES)}, not {spec['mode']!r}")
    if not isinstance(spec["divisor"], int) or isinstance(spec["divisor"], bool) or not 1 <= spec["divisor"] <= 1024:
        raise bad("input.divisor", f"must be an integer from 1 to 1024, not {spec['divisor']!r}")
    stride = output_stride(meta["model"])
    if spec["divisor"] % stride:
        raise bad("input.divisor", f"must be a multiple of the model's stride {stride}, not {spec['divisor']!r}")
    if spec["mode"] != "pad" and (size is None or size[0] % spec["divisor"] or size[1] % spec["divisor"]):
        raise bad("input.size", f"must be [height, width] divisible by {spec['divisor']} for mode {spec['mode']}, "
                  f"not {size!r}")
    for key in ("mean", "std"):
        values = spec[key]
        if not (isinstance(values, list) and len(values) == spec["channels"] and
                all(isinstance(v, int | float) and math.isfinite(v) for v in values)):
            raise bad(f"input.{key}", f"must be {spec['channels']} finite numbers, not {values!r}")
    if not all(MIN_STD <= v <= MAX_PIXEL for v in spec["std"]) or not all(abs(v) <= MAX_PIXEL for v in spec["mean"]):
        raise bad("input.std", f"and input.mean must lie in {MIN_STD:g}-{MAX_PIXEL} and +-{MAX_PIXEL} (finite "
                  f"outputs), not {spec['std']!r} and {spec['mean']!r}")
    threshold = meta.get("threshold", 0.5)
    if not isinstance(threshold, int | float) or not 0 < threshold < 1:
        raise bad("threshold", f"must lie between 0 and 1, not {threshold!r}")
    if meta.get("events") not in (None, "time", "box"):
        raise bad("events", f"must be time, box or null, not {meta['events']!r}")
    colours = meta.get("colours")
    if not (isinstance(colours, list) and len(colours) == len(classes) and all(
            isinstance(c, list) and len(c) == 3 and all(type(v) is int and 0 <= v <= 255 for v in c)
            for c in colours)):
        raise bad("colours", f"must give one [R, G, B] (0-255) per class, not {str(colours)[:60]}")
    _check_audio_meta(meta, bad)


def _check_audio_meta(meta: dict, bad: Any) -> None:
    """The spectrogram settings and the tuned event settings of a bird-sound model, when present."""
    from unetseg.audio.spectrogram import SpectrogramConfig

    spectrogram = meta.get("spectrogram")
    if spectrogram is not None:
        if not isinstance(spectrogram, dict):
            raise bad("spectrogram", "must be a mapping of spectrogram settings or null")
        try:
            cfg = SpectrogramConfig.from_dict(spectrogram)
        except (UnetsegError, TypeError, ValueError) as e:
            raise bad("spectrogram", f"is not a valid spectrogram setting ({' '.join(str(e).split())[:100]})") from None
        if cfg.sample_rate is not None:
            from unetseg.audio.spectrogram import check_band

            try:
                check_band(cfg, cfg.sample_rate, "its band")
            except UnetsegError as e:
                raise bad("spectrogram", str(e)) from None
        numbers = {k: v for k, v in vars(cfg).items() if isinstance(v, int | float) and not isinstance(v, bool)}
        sizes = ("sample_rate", "n_fft", "win_length", "hop_length", "n_mels", "fmin", "fmax")
        if not all(math.isfinite(v) and (k not in sizes or v >= 0) for k, v in numbers.items()):
            raise bad("spectrogram", f"holds a value out of range ({numbers})")
    detect = meta.get("detect")
    if detect is not None:
        if not isinstance(detect, dict):
            raise bad("detect", "must be a mapping of tuned event settings or null")
        for key in ("min_duration", "merge_gap"):
            v = detect.get(key)
            if v is not None and not (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                                      and 0 <= v <= 3600):
                raise bad(f"detect.{key}", f"must be a number of seconds from 0 to 3600, not {v!r}")
        peak = detect.get("peak_threshold")
        if peak is not None and not (isinstance(peak, int | float) and not isinstance(peak, bool) and 0 <= peak <= 1):
            raise bad("detect.peak_threshold", f"must be a number from 0 to 1, not {peak!r}")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the model from its metadata and load its weights (no code from the file runs)."""
    from safetensors.torch import load_file

    path = model_path(path)
    meta, model = validate_model_file(path)
    outputs = 1 if meta["binary"] else len(meta["classes"])
    try:
        state = load_file(str(path), device=str(device))
        if model is not None:  # the checked skeleton takes the file's tensors: no weights made only to be replaced
            model.load_state_dict(state, strict=True, assign=True)
            model = model.float()  # as loading into a built model casts half-precision files
            if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
                model = None  # a buffer the file does not hold (not persistent): made by building the model
        if model is None:
            model = create_model(meta["model"], int(meta["input"]["channels"]), outputs)
            model.load_state_dict(state, strict=True)
    except (RuntimeError, SafetensorError) as e:
        raise UnetsegError(f"{path}: weights do not match the {meta['model']['arch']} model it describes "
                           f"({' '.join(str(e).split())[:200]})") from e
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UnetsegError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values (first: {bad[0]}); "
                           "the model would predict nonsense - retrain or take an earlier checkpoint")
    return LoadedModel(model.to(device).eval(), meta, Path(path))
