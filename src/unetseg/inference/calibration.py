"""Calibration images for int8 quantization: the training split recorded in the model's run, or a folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from unetseg.core.errors import UnetsegError
from unetseg.data.discover import list_images
from unetseg.data.images import read_image
from unetseg.data.transforms import normalize, prepare_input
from unetseg.models.modelfile import LoadedModel

CALIBRATION_IMAGES = 32
AGREEMENT_FLOOR = 0.98  # IoU of a faster backend's masks against fp32 masks, below which it is refused


def calibration_images(loaded: LoadedModel, folder: str | Path | None = None,
                       limit: int = CALIBRATION_IMAGES) -> list[Path]:
    """Up to ``limit`` evenly spaced images of ``folder``, else of the training split recorded in the
    model's run; an empty list when neither is there."""
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise UnetsegError(f"{folder}: calibration folder not found")
        files = list_images(folder)
        if not files:
            raise UnetsegError(f"{folder}: no calibration images found")
    elif loaded.run_dir is not None:
        record = json.loads((loaded.run_dir / "dataset.json").read_text())
        files = [Path(files[0]) for files in record["splits"].get("train", [])]
        files = [f for f in files if f.is_file()]
    else:
        return []
    step = max(1, len(files) // limit)
    return files[::step][:limit]


def calibration_batches(loaded: LoadedModel, folder: str | Path | None = None, raw: bool = False) -> list[np.ndarray]:
    """Calibration images as network input: each (1, C, H, W) float32, fitted and normalised (``raw``:
    fitted pixels 0-255, the input of an exported graph)."""
    files = calibration_images(loaded, folder)
    if not files:
        raise UnetsegError(f"{loaded.path or 'model'}: int8 needs calibration images: the model's run folder "
                           "(with its dataset.json) is not beside it; pass --calibration DIR")
    spec = loaded.input_spec
    out = []
    for f in files:
        fitted, _ = prepare_input(read_image(f, spec.channels), spec)
        if raw:
            out.append(np.ascontiguousarray(fitted.transpose(2, 0, 1)[None] * 255, dtype=np.float32))
        else:
            out.append(normalize(fitted, spec.mean, spec.std)[None].numpy())
    return out
