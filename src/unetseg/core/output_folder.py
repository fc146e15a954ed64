"""Output folders of inference runs (``predict``, ``audio detect``): never mixed, never half-written, resumable.

The folder's ``inference.json`` is written before the first output and records the *key* of the run: the
model's digest and every option that changes what is written. ``--resume`` continues a folder only when
its key is the same; an input counts as done when all its output files exist (each is written atomically,
so an existing file is a complete one). Temporary files left by a killed run of ours are removed first (only
those: see ``guard``), outputs are checked against the inputs, and the folder is locked while it is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetseg.core.distributed import Group
from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import atomic_write, check_output_dir, write_json
from unetseg.core.guard import LOCK, check_output_folder, check_outputs, folder_lock, remove_stale_temps

MANIFEST = "inference.json"


def _first_difference(old: Any, new: Any, prefix: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if old.get(k) != new.get(k):
                return _first_difference(old.get(k), new.get(k), f"{prefix}{k}.")
    return f"{prefix.rstrip('.')} ({old!r} then, {new!r} now)"


@dataclass(frozen=True)
class Plan:
    """Every file a run will write, and what it reads: checked as one before any work (``guard.check_outputs``).

    ``targets`` maps each input's name to the files it produces; ``extra``: files written once for the run
    (a COCO results file, ``events.csv``); ``inputs``: the files it reads (model, images, recordings), which no
    output may be; ``input_dirs``: folders of inputs, which the output folder may neither be, hold nor lie in.
    """

    targets: Mapping[str, list[Path]]
    inputs: Sequence[Path] = ()
    input_dirs: Sequence[Path] = ()
    extra: Sequence[Path] = ()

    def files(self, folder: Path) -> list[Path]:
        return [folder / MANIFEST, *self.extra, *(f for files in self.targets.values() for f in files)]


def recorded_outputs(folder: Path) -> set[Path]:
    """The files the ``inference.json`` of ``folder`` records as its run's outputs (none without one)."""
    try:
        listed = json.loads((folder / MANIFEST).read_text()).get("outputs", [])
    except (OSError, ValueError, AttributeError):
        return set()
    if not isinstance(listed, list):
        return set()
    return {(folder / p).resolve() for p in listed if isinstance(p, str)} | {(folder / MANIFEST).resolve()}


def written_by_us(path: Path, *keys: str) -> bool:
    """Whether ``path`` is a JSON record an earlier unetseg command wrote (it holds one of ``keys``), so that
    ``--overwrite`` may replace it; a user's file of that name never is."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and any(k in data for k in keys)


def relative_outputs(folder: Path, files: Iterable[Path]) -> list[str]:
    """Output paths as a manifest records them: relative to ``folder`` (absolute when outside it)."""
    root = folder.resolve()
    out = []
    for f in files:
        r = Path(f).resolve()
        out.append(str(r.relative_to(root)) if root in r.parents else str(r))
    return out


class OutputRun:
    """The outputs of one run in ``folder``, as ``plan`` lists them.

    ``mode``: ``new`` (an existing output file is an error), ``overwrite`` (only files an earlier unetseg run
    recorded in this folder's ``inference.json`` are replaced) or ``resume``.
    """

    def __init__(self, folder: str | Path, key: Mapping[str, Any], plan: Plan, mode: str = "new") -> None:
        if mode not in ("new", "overwrite", "resume"):
            raise ValueError(mode)
        self.folder = check_output_dir(folder)
        check_output_folder(self.folder, plan.input_dirs)
        files = plan.files(self.folder)
        check_outputs(files, plan.inputs, overwrite=True, input_dirs=plan.input_dirs,
                      owned=recorded_outputs(self.folder) if mode == "overwrite" else None)
        self.outputs = relative_outputs(self.folder, files[1:])
        self.key = json.loads(json.dumps(dict(key), default=str))  # as it reads back from JSON
        self.targets = targets = plan.targets
        self.mode = mode
        self.done: set[str] = set()
        manifest = self.folder / MANIFEST
        if mode == "resume" and manifest.is_file():
            try:
                old = json.loads(manifest.read_text()).get("key")
            except (OSError, ValueError, AttributeError):
                old = None
            if old is None:
                raise UnetsegError(f"{manifest}: not written by a resumable run; choose another --output")
            if old != self.key:
                raise UnetsegError(f"{self.folder}: made by another model or other options (differs in "
                                   f"{_first_difference(old, self.key)}); resume with the same ones or choose "
                                   "another --output")
            self.done = {name for name, files in targets.items() if all(f.exists() for f in files)}
        elif mode != "overwrite":
            existing = [f for f in files[1:] if f.exists()]
            if (self.folder / MANIFEST).is_file() and not existing:
                existing = [self.folder / MANIFEST]  # the record of an earlier run, whose outputs are elsewhere
            if existing:
                hint = "--resume (continue it)" if mode == "new" else "--overwrite"
                raise UnetsegError(f"{existing[0]}: already exists ({len(existing)} output files would be replaced);"
                                   f" choose another --output, or pass {hint} or --overwrite")

    @contextmanager
    def session(self, describe: Mapping[str, Any]) -> Iterator[OutputRun]:
        """Remove temporary files of killed runs and record the run before the first output; when the block
        fails before any output exists, take the record (and a folder it made) away again."""
        created = not self.folder.exists()
        with folder_lock(self.folder):
            remove_stale_temps({f.parent for files in self.targets.values() for f in files} | {self.folder})
            with self._recorded(describe, created):
                yield self

    @contextmanager
    def _recorded(self, describe: Mapping[str, Any], created: bool) -> Iterator[None]:
        previous = (self.folder / MANIFEST).read_bytes() if (self.folder / MANIFEST).is_file() else None
        self.write(describe, complete=False)
        try:
            yield
        except BaseException:
            if not any(f.exists() for files in self.targets.values() for f in files):
                if previous is None:
                    (self.folder / MANIFEST).unlink(missing_ok=True)
                else:
                    atomic_write(self.folder / MANIFEST, lambda p: p.write_bytes(previous))
                if created and self.folder.is_dir() and not [f for f in self.folder.iterdir() if f.name != LOCK]:
                    (self.folder / LOCK).unlink(missing_ok=True)
                    self.folder.rmdir()
            raise

    def write(self, describe: Mapping[str, Any], complete: bool, **extra: Any) -> None:
        write_manifest(self.folder, describe, self.key, complete, len(self.done), outputs=self.outputs, **extra)


def write_manifest(folder: Path, describe: Mapping[str, Any], key: Mapping[str, Any], complete: bool,
                   resumed: int, **extra: Any) -> None:
    """``inference.json``: what ran, the run's key, whether it completed and how many inputs a resume skipped."""
    write_json(folder / MANIFEST, {**describe, "key": key, "complete": complete, "resumed": resumed, **extra})


def output_mode(overwrite: bool, resume: bool) -> str:
    """``--overwrite`` / ``--resume`` as an ``OutputRun`` mode."""
    if overwrite and resume:
        raise UnetsegError("--overwrite and --resume exclude each other")
    return "overwrite" if overwrite else "resume" if resume else "new"


@contextmanager
def shared_run(group: Group, folder: Path, key: Mapping[str, Any], plan: Plan, mode: str,
               describe: Mapping[str, Any]) -> Iterator[set[str]]:
    """An ``OutputRun`` for every process of ``group``: rank 0 checks the folder and holds its session (its
    error raised on every rank); each process gets the names of the inputs done before. The caller writes the
    complete record with ``finish``."""
    with ExitStack() as stack:
        def open_run() -> set[str]:
            run = OutputRun(folder, key, plan, mode)
            stack.enter_context(run.session(describe))
            return run.done

        yield group.gather(group.first(open_run))[0]


def finish(folder: Path, plan: Plan, describe: Mapping[str, Any], key: Mapping[str, Any], resumed: int,
           **extra: Any) -> None:
    """The complete record of a run (rank 0, after every output is written), listing its outputs."""
    write_manifest(folder, describe, key, True, resumed, outputs=relative_outputs(folder, plan.files(folder)[1:]),
                   **extra)
