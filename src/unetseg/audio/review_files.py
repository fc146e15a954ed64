"""Names and places of review folders: a review's name is a plain folder name (never a path), its folder
holds ``review.json``, and a recording is known by its SHA-256 (a re-upload finds its review)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from unetseg.core.errors import UnetsegError

REVIEW_FILE = "review.json"
LOCK_FILE = ".review.lock"
TRASH = ".deleted"  # deleted reviews are moved here, never erased
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_name(name: str) -> str:
    """A review's name as given by a client: a plain folder name (letters, digits, ``._-``), never a path."""
    if not isinstance(name, str) or not NAME.match(name) or ".." in name:
        raise UnetsegError(f"review name {str(name)[:40]!r} is not a plain name (letters, digits, '.', '_', '-'; "
                           "at most 100)")
    return name


def safe_name(text: str) -> str:
    """A folder name made from a file name: other characters become ``_``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(text).stem).strip("._-")[:100]
    return stem or "recording"


def reviews_in(root: str | Path) -> list[Path]:
    """Review folders of ``root`` (or ``root`` itself when it is one), sorted by name."""
    root = Path(root)
    if (root / REVIEW_FILE).is_file():
        return [root]
    if not root.is_dir():
        raise UnetsegError(f"{root}: no such review folder")
    return sorted(p.parent for p in root.glob(f"*/{REVIEW_FILE}"))


def is_review(path: str | Path) -> bool:
    """Whether ``path`` is a review folder or a folder of them."""
    path = Path(path)
    return path.is_dir() and ((path / REVIEW_FILE).is_file() or any(path.glob(f"*/{REVIEW_FILE}")))



def extension(fmt: str) -> str:
    return {"WAV": ".wav", "WAVEX": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3", "AIFF": ".aiff"}.get(
        fmt.upper(), ".audio")




def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """The SHA-256 of a file, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
