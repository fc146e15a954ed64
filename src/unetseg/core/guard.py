"""The output guard: what every command that writes checks before it writes anything.

- An output never resolves to one of the command's inputs (refused even with ``--overwrite``).
- An existing output is never replaced without ``--overwrite``.
- Temporary files carry this process's id (``.<name>.unetseg-<pid>-<random>.tmp<ext>``); clean-up removes
  only such files of processes that no longer run, never a user's ``.notes.tmp.txt`` or ``.x.partial``.
- A folder being written is locked (``.unetseg.lock``, ``flock``) against a second writer.
- Run names are one plain folder name: no ``/``, ``..`` or absolute paths.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from unetseg.core.errors import UnetsegError

TEMP_TAG = ".unetseg-"
_TEMP = re.compile(r"^\..+\.unetseg-(\d+)-[A-Za-z0-9_]+\.(tmp|partial)")
LOCK = ".unetseg.lock"


def temp_prefix(path: Path) -> str:
    """The start of a temporary name beside ``path`` that only this process uses; a long name is shortened
    (its start and a hash), so that the temporary name fits where the final one does (255 bytes)."""
    name = path.name
    if len(name.encode()) > 120:
        import hashlib

        name = name.encode()[:80].decode(errors="ignore") + "~" + hashlib.sha1(name.encode()).hexdigest()[:10]
    return f".{name}{TEMP_TAG}{os.getpid()}-"


def temp_path(path: Path, kind: str = "partial") -> Path:
    """A temporary file name beside ``path`` for a file written in pieces (``.partial``)."""
    import secrets

    return path.with_name(f"{temp_prefix(path)}{secrets.token_hex(4)}.{kind}{path.suffix}")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temp(path: Path) -> bool:
    """A temporary file one of our writers left when its process was killed (the process no longer runs)."""
    m = _TEMP.match(path.name)
    return bool(m) and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1)))


def remove_stale_temps(folders: Iterable[Path]) -> int:
    """Remove the temporary files dead runs of ours left in ``folders``; return how many."""
    removed = 0
    for folder in set(folders):
        if folder.is_dir():
            for f in folder.iterdir():
                if f.is_file() and stale_temp(f):
                    f.unlink(missing_ok=True)
                    removed += 1
    return removed


def _identity(path: Path) -> tuple:
    """What makes two paths one file: its device and inode when it exists (hard links, bind mounts), else its
    resolved path."""
    try:
        st = path.stat()
        return ("inode", st.st_dev, st.st_ino)
    except OSError:
        return ("path", path.resolve())


def within(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it (links resolved)."""
    return _inside(path.resolve(), folder.resolve())


def _inside(path: Path, folder: Path) -> bool:
    """``within`` of paths already resolved."""
    return path == folder or folder in path.parents


def check_outputs(outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None],
                  overwrite: bool = False, hint: str = "--overwrite", *, input_dirs: Iterable[Path] = (),
                  owned: Iterable[Path] | None = None) -> None:
    """The plan of every file a command will write, refused before any work when one output is another's path,
    one of the inputs, inside an input folder (``input_dirs``: folders given as input and the folders of a
    dataset's images and masks), or exists without ``overwrite``. With ``overwrite``, an existing output is
    replaced only when it is in ``owned`` (the files an earlier unetseg run recorded as its own); None: the
    caller knows every output is its own (e.g. inside a folder it made).
    """
    ins = [Path(p) for p in inputs if p is not None]
    # each input's identity once: a folder of N images checked against N outputs costs N + N stats, not N x N
    in_files = {_identity(p): p for p in ins if not p.is_dir()}
    in_dirs = [(p, _identity(p), p.resolve()) for p in [p for p in ins if p.is_dir()] + [Path(p) for p in input_dirs]]
    mine = None if owned is None else {Path(p).resolve() for p in owned}
    planned: dict[Path, Path] = {}
    for raw in outputs:
        if raw is None:
            continue
        if str(raw) == "":
            raise UnetsegError("an output path is empty; name a file or folder")
        out = Path(raw)
        key = out.resolve()
        if key in planned:
            raise UnetsegError(f"{out}: two outputs of this command would be written to this path ({planned[key]} "
                               "and this one); choose other paths")
        planned[key] = out
        identity = _identity(out)
        if identity in in_files:
            raise UnetsegError(f"{out}: is also an input of this command ({in_files[identity]}); choose another "
                               "output (refused even with --overwrite)")
        for src, folder, resolved in in_dirs:
            if identity == folder or _inside(key, resolved):
                raise UnetsegError(f"{out}: is inside the input folder {src}; write the outputs elsewhere "
                                   "(refused even with --overwrite)")
        if out.is_dir():
            raise UnetsegError(f"{out}: is a folder; this output is a file, name one")
        if out.exists():
            if not overwrite:
                raise UnetsegError(f"{out}: already exists; choose another output or pass {hint}")
            if mine is not None and key not in mine:
                raise UnetsegError(f"{out}: already exists and no earlier unetseg run recorded it as its output; "
                                   "it is not replaced, even with --overwrite (move it or choose another output)")


def check_output_folder(folder: Path, input_dirs: Iterable[Path]) -> None:
    """An output folder may not be an input folder, lie inside one, or hold one (writing there would mix
    outputs with the inputs: ``--output DATASET`` or ``--output DATASET/test/images``)."""
    for src in input_dirs:
        if within(folder, src) or within(src, folder):
            raise UnetsegError(f"{folder}: holds or lies inside the input folder {src}; write the outputs "
                               "elsewhere (refused even with --overwrite)")


def check_run_name(name: str, what: str = "run name") -> str:
    """A run name is one folder name under the runs folder: no separators, ``..`` or absolute paths."""
    if (not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name or os.path.isabs(name)
            or name.strip() != name):
        raise UnetsegError(f"{what} {name!r}: must be a plain folder name (no '/', '..', absolute path or spaces "
                           "around it); use --runs-dir for another parent folder")
    if len(name.encode()) > 200:
        raise UnetsegError(f"{what} {name[:40]!r}...: longer than 200 bytes")
    return name


@contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s lock while the block writes into it; a second writer fails at once with one line.

    ``flock`` by hand rather than ``filelock`` (which the review store uses): the error names the holder's pid,
    and the lock file is removed afterwards, so nothing of ours stays in a user's output folder."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise UnetsegError(f"{folder}: another unetseg process (pid {holder}) is writing this folder; wait for "
                               "it or choose another output") from None
        if os.fstat(fd).st_ino != _inode(path):  # the holder before us removed the file: take the new one
            os.close(fd)
            fd = -1
            with folder_lock(folder):
                yield
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        if fd >= 0:
            os.close(fd)


def _inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return -1
