"""Atomic writes and never-overwriting run folders."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def cache_root() -> Path:
    """Where derived files (rendered COCO masks, exported graphs, backend probes) are kept:
    ``$UNETSEG_CACHE`` or ``~/.cache/unetseg``."""
    return Path(os.environ.get("UNETSEG_CACHE", Path.home() / ".cache" / "unetseg"))


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place.

    A crash leaves either the old file or the new one, never half a file. The file gets the permissions a
    plainly created file would (0666 less the umask), not mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def write_json(path: str | Path, data: Any, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(data, indent=indent, default=_json_default) + "\n")


def write_png(path: str | Path, array: np.ndarray, palette: list[list[int]] | None = None) -> Path:
    """Write a uint8/uint16 array as PNG; with ``palette``, as an indexed ('P') image."""

    def _write(p: Path) -> None:
        img = Image.fromarray(array)
        if palette is not None:
            img = img.convert("P") if img.mode != "P" else img
            flat = [c for rgb in palette for c in rgb]
            img.putpalette(flat + [0] * (768 - len(flat)))
        img.save(p, format="PNG")

    return atomic_write(path, _write)


def new_run_dir(parent: str | Path, name: str) -> Path:
    """Create ``parent/name``, or ``name-2``, ``name-3``... if taken; never reuse a folder."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        candidate = parent / (name if n == 1 else f"{name}-{n}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
