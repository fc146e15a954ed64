"""Review folders as a store: made from detected events (``create_review``, ``reviews_from_tables``), reached
by name with one writer at a time (``ReviewStore``), and read back as training data (``review_annotations``,
``dataset_from_review``). The record of one review is ``audio.review.Review``."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetseg.audio.annotations import Event, read_annotations
from unetseg.audio.review import LOCK_TIMEOUT, VERSION, Review
from unetseg.audio.review_files import (
    LOCK_FILE,
    REVIEW_FILE,
    TRASH,
    check_name,
    extension,
    file_sha256,
    reviews_in,
    safe_name,
)
from unetseg.core.errors import UnetsegError

log = logging.getLogger(__name__)


def create_review(root: str | Path, name: str, recording: Path, events: list[Event], model: dict[str, Any],
                  spectrogram: dict[str, Any], classes: list[str], move: bool = False) -> Review:
    """A new review folder ``<root>/<name>`` (``name-2``... when taken: an existing review is never
    replaced) of ``events`` detected in ``recording``; ``move`` moves the recording into the folder."""
    from unetseg.audio.recordings import audio_info
    from unetseg.core.fileio import new_run_dir

    info = audio_info(recording)
    folder = new_run_dir(root, check_name(name))
    target = folder / f"{folder.name}{extension(info.format)}"
    if move:
        recording.replace(target)
    else:  # a hard link costs no space; a copy where the file is on another disk
        try:
            os.link(recording.resolve(), target)
        except OSError:
            import shutil

            shutil.copyfile(recording.resolve(), target)
    where = target.name
    data = {"version": VERSION, "recording": where, "source": None if move else str(recording.resolve()),
            "sha256": file_sha256(target),
            "duration": info.duration, "sample_rate": info.sample_rate,
            "channels": info.channels, "model": model, "spectrogram": spectrogram, "classes": classes,
            "revision": 0, "events": []}
    for i, e in enumerate(sorted(events, key=lambda e: (e.begin, e.end)), 1):
        box = {"begin": round(e.begin, 4), "end": round(min(e.end, info.duration), 4), "low": e.low, "high": e.high,
               "label": e.label, "score": None if e.score is None else round(e.score, 4)}
        data["events"].append({"id": f"e{i}", **box, "state": "unreviewed", "detected": box, "revision": 0})
    review = Review(folder, data)
    review._check(folder / REVIEW_FILE)
    review.save()
    return review


@dataclass(frozen=True)
class ReviewedRecordings:
    """What a review folder gives training: each recording's corrected events and the spectrogram settings
    and classes of the model that detected them."""

    events: dict[Path, list[Event]]
    spectrogram: dict[str, Any]
    classes: list[str]
    model: dict[str, Any]  # the detecting model's name, sha256 and (from ``audio detect --review``) its path


def review_annotations(root: str | Path, reviewed_only: bool = False) -> ReviewedRecordings:
    """The corrected events of every review in ``root`` (a review folder or a folder of them), checked: the
    reviews must share one spectrogram, and their recordings must exist and have distinct names."""
    folders = reviews_in(root)
    if not folders:
        raise UnetsegError(f"{root}: no reviews (folders with {REVIEW_FILE})")
    reviews = [Review.load(f) for f in folders]
    events: dict[Path, list[Event]] = {}
    stems: dict[str, Path] = {}
    for r in reviews:
        if not r.recording.is_file():
            raise UnetsegError(f"{r.folder / REVIEW_FILE}: its recording {r.recording} is missing")
        if r.data["spectrogram"] != reviews[0].data["spectrogram"]:
            raise UnetsegError(f"{r.folder}: its spectrogram settings differ from {reviews[0].folder}'s; review "
                               "recordings of one model together")
        if r.recording.stem in stems:
            raise UnetsegError(f"{r.folder}: its recording's name {r.recording.name} is that of "
                               f"{stems[r.recording.stem]} too; rename one")
        stems[r.recording.stem] = r.recording
        events[r.recording] = r.annotations(reviewed_only)
    return ReviewedRecordings(events, reviews[0].data["spectrogram"], list(reviews[0].data["classes"]),
                              dict(reviews[0].data.get("model") or {}))


def reviewed_model(root: str | Path) -> Path | None:
    """The model file that detected the events of the reviews in ``root``, when it is still where it was and
    unchanged (its SHA-256): a run on the corrections starts from it (``train --data <review>``)."""
    from unetseg.models.modelfile import load_model

    model = review_annotations(root).model
    path = Path(model["path"]) if isinstance(model.get("path"), str) else None
    if path is None or not path.is_file():
        return None
    try:
        same = load_model(path).digest == model.get("sha256")
    except UnetsegError:
        same = False
    if not same:
        log.warning("%s: the reviewed model %s has changed since the review; the run starts from scratch", root, path)
        return None
    return path


def reviews_from_tables(root: str | Path, recordings: list[Path], tables: dict[str, Path], model: dict[str, Any],
                        spectrogram: dict[str, Any], classes: list[str]) -> Iterator[tuple[Path, Review | None]]:
    """A review per recording from its events table (as ``audio detect`` wrote it); a recording whose review
    exists already keeps it (None), whatever was detected now."""
    root = Path(root)
    existing = {Review.load(f).data.get("source"): f for f in reviews_in(root)} if root.is_dir() else {}
    for f in recordings:
        if str(f.resolve()) in existing:
            yield existing[str(f.resolve())], None
            continue
        review = create_review(root, safe_name(f.name), f, read_annotations(tables[f.name]), model, spectrogram,
                               classes)
        yield review.folder, review


class ReviewStore:
    """The reviews under one root, as the server reaches them: by name only (never a path), one writer at a
    time per review."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def folder(self, name: str) -> Path:
        folder = (self.root / check_name(name)).resolve()
        if folder.parent != self.root or not (folder / REVIEW_FILE).is_file():
            raise KeyError(name)
        return folder

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """One writer of a review at a time, across the threads of this server and across processes (another
        server on the same folder): a thread lock, then a file lock on ``<review>/.review.lock``."""
        from filelock import FileLock, Timeout

        with self._guard:
            local = self._locks.setdefault(name, threading.Lock())
        with local:
            try:
                with FileLock(str(self.folder(name) / LOCK_FILE), timeout=LOCK_TIMEOUT):
                    yield
            except Timeout:
                raise UnetsegError(f"review {name!r} is being written by another process for over "
                                   f"{LOCK_TIMEOUT:g} s; try again") from None

    def load(self, name: str) -> Review:
        return Review.load(self.folder(name))

    def list(self) -> list[dict[str, Any]]:
        out = []
        for folder in reviews_in(self.root):
            if folder.resolve().parent != self.root:  # a link to a folder elsewhere
                continue
            try:
                out.append(Review.load(folder).summary())
            except UnetsegError as e:  # one damaged review never hides the others
                log.warning("review %s left out of the list: %s", folder.name, self.hide(str(e)))
        return out

    def same_recording(self, sha256: str) -> str | None:
        """The name of a review of the recording whose SHA-256 is ``sha256`` (a re-upload), or None."""
        for folder in reviews_in(self.root):
            try:
                if folder.resolve().parent == self.root and Review.load(folder).data.get("sha256") == sha256:
                    return folder.name
            except UnetsegError:
                continue
        return None

    def delete(self, name: str) -> str:
        """Move a review out of the list, into ``<root>/.deleted/`` (a person's work is never erased); returns
        where it went, relative to the root."""
        import time

        with self.lock(name):
            folder = self.folder(name)
            trash = self.root / TRASH
            trash.mkdir(exist_ok=True)
            target = trash / f"{name}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
            folder.replace(target)
        return str(target.relative_to(self.root))

    def hide(self, text: str) -> str:
        """``text`` (an error's) without the server's folders: paths inside the root are shown relative."""
        root = str(self.root)
        return text.replace(root + "/", "").replace(root, "<reviews>")


def dataset_from_review(review: str | Path, output: str | Path, labels: Any = None, windows: Any = None,
                        cfg: Any = None, reviewed_only: bool = False) -> Any:
    """A review folder's recordings and corrected events -> a new dataset folder (``audio dataset --review``
    and ``train --data <review folder>``): on the reviewed model's spectrogram unless ``cfg`` is given, and
    with its classes when it had several and ``labels`` names none."""
    import dataclasses

    from unetseg.audio.datasets import Labels, build_annotated_dataset
    from unetseg.audio.spectrogram import SpectrogramConfig

    reviewed = review_annotations(review, reviewed_only)
    labels = labels or Labels()
    if labels.classes is None and len(reviewed.classes) > 2:
        labels = dataclasses.replace(labels, classes=reviewed.classes[1:])
    cfg = cfg or SpectrogramConfig.from_dict(reviewed.spectrogram)
    return build_annotated_dataset(list(reviewed.events), reviewed.events, output, cfg, windows, labels)
