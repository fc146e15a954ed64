"""Atomic writes and never-overwriting run folders."""

from __future__ import annotations

import glob
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from unetseg.core.errors import UnetsegError
from unetseg.core.guard import check_run_name, pid_alive, temp_prefix

MAX_YAML_BYTES, MAX_YAML_NODES, MAX_YAML_DEPTH = 1 << 20, 100_000, 64


def read_yaml(path: str | Path, what: str = "YAML") -> Any:
    """A YAML file of settings, read safely and bounded: at most 1 MB, 64 levels deep and 100,000 values once
    every alias is expanded (a 1 kB alias bomb is refused in one line, not built up to a MemoryError)."""
    import yaml

    path = Path(path)
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise UnetsegError(f"{path}: a {what} of {path.stat().st_size} bytes is over {MAX_YAML_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise UnetsegError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise UnetsegError(f"{path}: the {what} is not UTF-8 text") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _yaml_size(node, path, what)
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        raise UnetsegError(f"{path}: cannot read the {what}: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise UnetsegError(f"{path}: the {what} is nested too deeply") from None
    finally:
        loader.dispose()


def _yaml_size(root: Any, path: Path, what: str) -> None:
    """Refuse a YAML document that expands to too many values or levels (aliases counted at every use)."""
    import yaml

    sizes: dict[int, int] = {}
    stack: list[tuple[Any, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if depth > MAX_YAML_DEPTH:
            raise UnetsegError(f"{path}: the {what} is nested more than {MAX_YAML_DEPTH} levels deep")
        children = [] if isinstance(node, yaml.ScalarNode) else \
            [v for pair in node.value for v in pair] if isinstance(node, yaml.MappingNode) else list(node.value)
        if id(node) in sizes and not done:
            continue
        if not done:
            sizes[id(node)] = -1  # on the way down (a cycle is refused by PyYAML's constructor anyway)
            stack.append((node, depth, True))
            stack.extend((c, depth + 1, False) for c in children if id(c) not in sizes)
            continue
        sizes[id(node)] = 1 + sum(max(sizes.get(id(c), 0), 0) for c in children)
        if sizes[id(node)] > MAX_YAML_NODES:
            raise UnetsegError(f"{path}: the {what} expands to over {MAX_YAML_NODES} values (aliases repeated); "
                               "write the values out")


def cache_root() -> Path:
    """Where derived files (rendered COCO masks, exported graphs, backend probes) are kept:
    ``$UNETSEG_CACHE`` or ``~/.cache/unetseg``."""
    given = os.environ.get("UNETSEG_CACHE")
    if given == "":
        raise UnetsegError("UNETSEG_CACHE is set but empty; unset it or name a folder")
    root = Path(given) if given else Path.home() / ".cache" / "unetseg"
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise UnetsegError(f"{'UNETSEG_CACHE=' if given else ''}{root}: cannot be the cache folder: {probe} is a file; "
                           "point UNETSEG_CACHE at a folder")
    return root


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
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), suffix=".tmp" + path.suffix, dir=path.parent)
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


def encode_png(array: np.ndarray, palette: list[list[int]] | None = None, compress_level: int = 6) -> bytes:
    """A uint8/uint16 array as PNG bytes; with ``palette``, as an indexed ('P') image."""
    img = Image.fromarray(array)
    if palette is not None:
        img = img.convert("P") if img.mode != "P" else img
        flat = [c for rgb in palette for c in rgb]
        img.putpalette(flat + [0] * (768 - len(flat)))
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def write_png(path: str | Path, array: np.ndarray, palette: list[list[int]] | None = None) -> Path:
    """Write a uint8/uint16 array as PNG; with ``palette``, as an indexed ('P') image."""
    data = encode_png(array, palette)
    return atomic_write(path, lambda p: p.write_bytes(data))


def encode_mask(mask: np.ndarray, binary: bool, palette: list[list[int]] | None = None,
                compress_level: int = 6) -> bytes:
    """A class mask as unetseg writes it everywhere: binary 0/255; else an indexed PNG whose value is the
    class and whose ``palette`` (the class colours) draws it."""
    if binary:
        return encode_png((mask > 0).astype(np.uint8) * 255, compress_level=compress_level)
    return encode_png(mask.astype(np.uint8), palette, compress_level=compress_level)


def write_mask(path: str | Path, mask: np.ndarray, binary: bool, palette: list[list[int]] | None = None) -> Path:
    """``encode_mask`` written atomically."""
    data = encode_mask(mask, binary, palette)
    return atomic_write(path, lambda p: p.write_bytes(data))


def files_in(folder: Path, extensions: tuple[str, ...], recursive: bool = False) -> list[Path]:
    """The files of ``folder`` (and with ``recursive`` its subfolders) ending in ``extensions``, hidden ones
    left out, sorted; empty when there are none."""
    return sorted(p for p in (folder.rglob("*") if recursive else folder.iterdir())
                  if p.suffix.lower() in extensions and p.is_file() and not p.name.startswith("."))


def list_inputs(source: str | Path | list, extensions: tuple[str, ...], what: str, recursive: bool = False
                ) -> list[Path]:
    """A list of paths, a file, a folder (its files ending in ``extensions``, hidden ones left out; with
    ``recursive`` its subfolders' too) or a glob pattern -> sorted paths; none found is an error naming
    ``what`` was looked for."""
    if isinstance(source, list):
        return [Path(p) for p in source]
    if str(source) == "":
        raise UnetsegError(f"the input is empty (''); name a file, a folder or a pattern of {what}")
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = files_in(path, extensions, recursive)
    else:
        if not glob.has_magic(str(source)):
            raise UnetsegError(f"{source}: no such file or folder")
        found = sorted(Path(p) for p in glob.glob(str(source), recursive=True)
                       if Path(p).suffix.lower() in extensions and Path(p).is_file())
    if not found:
        raise UnetsegError(f"{source}: no {what} found ({', '.join(extensions)})")
    return found


def input_folders(source: str | Path | list, files: list[Path]) -> list[Path]:
    """The folders an input names, which outputs stay out of: a folder given, or the folders of the files a
    glob pattern or a list found (a single file given names none: an output may sit beside it)."""
    if not isinstance(source, list) and Path(source).is_file():
        return []
    if not isinstance(source, list) and Path(source).is_dir():
        return [Path(source)]
    return sorted({f.parent for f in files})


def check_output_dir(path: str | Path) -> Path:
    """Fail with one line, before any work, when ``path`` cannot become an output folder: it is a file,
    lies under a file, or its nearest existing folder is not writable."""
    if str(path) == "":
        raise UnetsegError("the output folder is empty (''); name a folder")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UnetsegError(f"{path}: exists and is not a folder; choose a folder for the outputs")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UnetsegError(f"{path}: cannot be a folder: {probe} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UnetsegError(f"{path}: cannot write in {probe} (permission denied)")
    return path


@contextmanager
def staged_dir(out: str | Path) -> Iterator[Path]:
    """Build a new folder in a hidden sibling (``.<name>.partial-<pid>``) and rename it to ``out`` once the
    block completes: an error or a kill leaves no half-built ``out``. ``out`` must not exist or be empty.
    Partial siblings left by processes that no longer run are removed first."""
    out = check_output_dir(out)
    if out.exists() and any(out.iterdir()):
        raise UnetsegError(f"{out}: output folder exists and is not empty; choose a new one")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.chmod(tmp, 0o777 & ~_umask())
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def new_run_dir(parent: str | Path, name: str) -> Path:
    """Create ``parent/name``, or ``name-2``, ``name-3``... if taken; never reuse a folder. ``name`` must be
    a plain folder name (no separators or ``..``): a run never lands outside ``parent``."""
    check_run_name(name)
    parent = check_output_dir(parent)
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
