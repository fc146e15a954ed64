"""Review folders: a recording's detected events, each with a review state, corrected by people and kept on
disk, exported as Raven, Audacity or CSV tables and read back as annotations for training.

A review root holds one folder per recording::

    <root>/<name>/review.json            the recording, its model and spectrogram, and every event with its state
    <root>/<name>/<name>.selections.txt  the corrected Raven table (deleted events left out), rewritten on each change
    <root>/<name>/<name>.wav             the recording, when it was uploaded (else review.json names its path)

Every change is one atomic write of ``review.json`` (a crash leaves the old file or the new one). Two
writers of one event: the last write wins, and the change says whether it replaced an edit its writer had
not seen (``Change.overwrote``).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetseg.audio.annotations import Event, format_audacity, format_csv, format_raven
from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import write_json, write_text

log = logging.getLogger(__name__)
REVIEW_FILE = "review.json"
LOCK_FILE = ".review.lock"
LOCK_TIMEOUT = 30.0  # seconds a writer waits for another
STATES = ("unreviewed", "accepted", "corrected", "added", "deleted")
KEPT = ("unreviewed", "accepted", "corrected", "added")  # what a corrected table holds
REVIEWED = ("accepted", "corrected", "added")  # what a person has looked at
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
MAX_LABEL = 100
VERSION = 1
MAX_DURATION = 7 * 24 * 3600.0  # a week of audio
MAX_RATE = 1_536_000


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


@dataclass(frozen=True)
class Change:
    """One event after a change, and whether the change replaced an edit its writer had not seen."""

    event: dict[str, Any]
    revision: int
    overwrote: bool


class Review:
    """One recording's review, as stored in ``<folder>/review.json``."""

    def __init__(self, folder: Path, data: dict[str, Any]) -> None:
        self.folder, self.data = folder, data

    # ------------------------------------------------------------------------------------------ reading

    @classmethod
    def load(cls, folder: str | Path) -> Review:
        folder = Path(folder)
        path = folder / REVIEW_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise UnetsegError(f"{path}: cannot read the review ({e.strerror})") from None
        except ValueError as e:
            raise UnetsegError(f"{path}: not a review file (invalid JSON: {e})") from None
        review = cls(folder, data)
        review._check(path)
        return review

    def _check(self, path: Path) -> None:
        d = self.data
        if not isinstance(d, dict) or d.get("version") != VERSION:
            raise UnetsegError(f"{path}: not a review file of version {VERSION}")
        for key, kind in (("recording", str), ("duration", (int, float)), ("sample_rate", int), ("events", list),
                          ("classes", list), ("spectrogram", dict), ("revision", int)):
            if not isinstance(d.get(key), kind) or isinstance(d.get(key), bool):
                raise UnetsegError(f"{path}: field {key!r} is missing or not a {getattr(kind, '__name__', 'number')}")
        if not (_finite(d["duration"]) and 0 < d["duration"] <= MAX_DURATION and 0 < d["sample_rate"] <= MAX_RATE):
            raise UnetsegError(f"{path}: duration {d['duration']!r} s or sample rate {d['sample_rate']!r} Hz is out of "
                               f"range (0-{MAX_DURATION:g} s, 1-{MAX_RATE} Hz)")
        if not all(isinstance(c, str) and _plain_label(c) for c in d["classes"]) or len(d["classes"]) > 256:
            raise UnetsegError(f"{path}: field 'classes' must be at most 256 labels of text without tabs or line "
                               "breaks")
        if not isinstance(d.get("model", {}), dict):
            raise UnetsegError(f"{path}: field 'model' must be an object (name, sha256)")
        from unetseg.audio.spectrogram import SpectrogramConfig

        try:
            SpectrogramConfig.from_dict(d["spectrogram"])
        except (UnetsegError, TypeError, ValueError) as e:
            raise UnetsegError(f"{path}: field 'spectrogram': {e}") from None
        inside_review(self.folder, d["recording"])
        seen = set()
        for i, e in enumerate(d["events"]):
            where = f"{path}: event {i + 1}"
            if not isinstance(e, dict) or not isinstance(e.get("id"), str) or e["id"] in seen:
                raise UnetsegError(f"{where} has no id of its own")
            seen.add(e["id"])
            if e.get("state") not in STATES:
                raise UnetsegError(f"{where} has state {e.get('state')!r}, not one of {', '.join(STATES)}")
            self._checked_box(e, where)

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def recording(self) -> Path:
        """The recording, a plain name inside the review folder (never a link or a path out of it)."""
        return inside_review(self.folder, self.data["recording"])

    @property
    def duration(self) -> float:
        return float(self.data["duration"])

    @property
    def nyquist(self) -> float:
        return self.data["sample_rate"] / 2

    @property
    def events(self) -> list[dict[str, Any]]:
        return self.data["events"]

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATES, 0)
        for e in self.events:
            counts[e["state"]] += 1
        return counts

    def summary(self) -> dict[str, Any]:
        """What a list of reviews shows: name, recording, duration, model and counts per state."""
        d = self.data
        return {"name": self.name, "recording": self.recording.name, "duration": d["duration"],
                "model": d.get("model", {}).get("name"), "revision": d["revision"], "events": len(self.events),
                "states": self.counts(), "updated": d.get("updated")}

    def annotations(self, reviewed_only: bool = False) -> list[Event]:
        """The corrected events as annotations: deleted ones left out, and unreviewed ones too when
        ``reviewed_only``."""
        keep = REVIEWED if reviewed_only else KEPT
        return [_event(e) for e in sorted(self.events, key=lambda e: (e["begin"], e["end"])) if e["state"] in keep]

    def export(self, fmt: str = "raven", deleted: bool = False) -> str:
        """The corrected table (Raven, Audacity or CSV), with a ``Review`` column of each event's state (Raven
        and CSV; Audacity labels have no columns); deleted events only when ``deleted``."""
        rows = sorted((e for e in self.events if deleted or e["state"] != "deleted"), key=lambda e: e["begin"])
        events = [_event(e) for e in rows]
        states = [e["state"] for e in rows]
        if fmt == "raven":
            return _with_column(format_raven(events), "\t", "Review", states)
        if fmt == "audacity":
            return format_audacity(events)
        if fmt == "csv":
            return _with_column(format_csv(events), ",", "review", states)
        raise UnetsegError(f"unknown table format {fmt!r} (choose raven, audacity or csv)")

    # ------------------------------------------------------------------------------------------ changing

    def _checked_box(self, e: dict[str, Any], where: str) -> None:
        for key in ("begin", "end"):
            if not _finite(e.get(key)):
                raise UnetsegError(f"{where}: {key} must be a number of seconds, not {e.get(key)!r}")
        for key in ("low", "high", "score"):
            if e.get(key) is not None and not _finite(e[key]):
                raise UnetsegError(f"{where}: {key} must be a number or null, not {e.get(key)!r}")
        if not 0 <= e["begin"] < e["end"] <= self.duration + 0.05:
            raise UnetsegError(f"{where}: {e['begin']:g}-{e['end']:g} s is not a span inside the recording "
                               f"(0-{self.duration:.3f} s)")
        low, high = e.get("low"), e.get("high")
        if (low is None) != (high is None):
            raise UnetsegError(f"{where}: give both low and high frequencies, or neither")
        if low is not None and not 0 <= low < high <= self.nyquist * 1.001:
            raise UnetsegError(f"{where}: band {low:g}-{high:g} Hz is not inside 0-{self.nyquist:g} Hz")
        label = e.get("label", "")
        if not isinstance(label, str) or len(label) > MAX_LABEL or not _plain_label(label):
            raise UnetsegError(f"{where}: label must be text of at most {MAX_LABEL} characters without tabs or "
                               "line breaks")

    def change(self, event_id: str, fields: dict[str, Any], seen: int | None = None) -> Change:
        """Change one event's box, label or state; a box or label change makes a detected event
        ``corrected`` unless a state is given. ``seen`` is the event revision the writer last saw."""
        unknown = set(fields) - {"begin", "end", "low", "high", "label", "state"}
        if unknown:
            raise UnetsegError(f"unknown event field(s) {', '.join(sorted(unknown))}")
        event = self._find(event_id)
        updated = {**event, **fields}
        if "state" not in fields and any(fields.get(k, event.get(k)) != event.get(k)
                                         for k in ("begin", "end", "low", "high", "label")):
            updated["state"] = "added" if event["state"] == "added" else "corrected"
        if updated["state"] not in STATES:
            raise UnetsegError(f"state {updated['state']!r} is not one of {', '.join(STATES)}")
        self._checked_box(updated, f"event {event_id}")
        overwrote = seen is not None and seen != event["revision"]
        return self._commit(event, updated, overwrote)

    def add(self, fields: dict[str, Any]) -> Change:
        """A new event drawn by a person (state ``added``)."""
        unknown = set(fields) - {"begin", "end", "low", "high", "label"}
        if unknown:
            raise UnetsegError(f"unknown event field(s) {', '.join(sorted(unknown))}")
        number = 1 + max((int(e["id"][1:]) for e in self.events if re.fullmatch(r"e\d+", e["id"])), default=0)
        event = {"id": f"e{number}", "begin": None, "end": None, "low": None, "high": None, "label": "",
                 "score": None, "state": "added", "detected": None, "revision": 0, **fields}
        self._checked_box(event, "new event")
        self.events.append(event)
        return self._commit(event, event, False)

    def _find(self, event_id: str) -> dict[str, Any]:
        event = next((e for e in self.events if e["id"] == event_id), None)
        if event is None:
            raise KeyError(event_id)
        return event

    def _commit(self, old: dict[str, Any], new: dict[str, Any], overwrote: bool) -> Change:
        self.data["revision"] += 1
        new = {**new, "revision": self.data["revision"]}
        old.clear()
        old.update(new)
        self.save()
        return Change(dict(old), self.data["revision"], overwrote)

    def save(self) -> None:
        """``review.json`` and the corrected Raven table, each written atomically."""
        self.data["updated"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        write_json(self.folder / REVIEW_FILE, self.data, indent=1)
        write_text(self.folder / f"{self.name}.selections.txt", self.export("raven"))


def _plain_label(text: str) -> bool:
    """A label a table can hold: no tab, line break or other control character."""
    return not any(ord(c) < 32 or ord(c) == 127 or c in "\u2028\u2029\x85" for c in text)


def inside_review(folder: Path, recording: str) -> Path:
    """``recording`` (as ``review.json`` names it) as a file inside ``folder``: a plain file name, not a link,
    resolving inside the folder; anything else (an absolute path, ``..``, a link out) is refused."""
    name = Path(recording)
    if name.is_absolute() or len(name.parts) != 1 or name.name in ("", ".", "..") or "\0" in recording:
        raise UnetsegError(f"{folder / REVIEW_FILE}: its recording ({name.name[:80]!r}) is given as a path, not "
                           "a file name inside the review folder")
    path = folder / name
    if path.is_symlink() or (path.exists() and path.resolve().parent != folder.resolve()):
        raise UnetsegError(f"{folder / REVIEW_FILE}: its recording {name.name} is a link; a review serves only a "
                           "file inside its folder")
    return path


def _with_column(table: str, sep: str, name: str, values: list[str]) -> str:
    """A table (header line, then one line per value) with one more column (Raven keeps extra columns as
    annotations)."""
    lines = table.splitlines()
    rows = [f"{line}{sep}{v}" for line, v in zip(lines[1:], values, strict=True)]
    return "\n".join([lines[0] + sep + name, *rows]) + "\n"


def extension(fmt: str) -> str:
    return {"WAV": ".wav", "WAVEX": ".wav", "FLAC": ".flac", "OGG": ".ogg", "MP3": ".mp3", "AIFF": ".aiff"}.get(
        fmt.upper(), ".audio")


def _finite(value: Any) -> bool:
    import math

    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _event(e: dict[str, Any]) -> Event:
    return Event(float(e["begin"]), float(e["end"]), e.get("low"), e.get("high"), e.get("label", ""), e.get("score"))
