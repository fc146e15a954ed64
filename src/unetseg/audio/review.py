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
from unetseg.audio.review_files import REVIEW_FILE
from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import write_json, write_text

log = logging.getLogger(__name__)
LOCK_TIMEOUT = 30.0  # seconds a writer waits for another
STATES = ("unreviewed", "accepted", "corrected", "added", "deleted")
KEPT = ("unreviewed", "accepted", "corrected", "added")  # what a corrected table holds
REVIEWED = ("accepted", "corrected", "added")  # what a person has looked at
MAX_LABEL = 100
VERSION = 1
MAX_DURATION = 7 * 24 * 3600.0  # a week of audio
MAX_RATE = 1_536_000
MAX_HISTORY = 1000  # edits that can be undone
MAX_LAYER_EVENTS = 100_000


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
        self._check_extras(path)

    def _check_extras(self, path: Path) -> None:
        """The history (boxes checked when replayed), the reference layers and the page's view settings."""
        d = self.data
        for key in ("history", "future"):
            stack = d.get(key, [])
            if not isinstance(stack, list) or not all(
                    isinstance(edit, list) and all(isinstance(c, dict) and isinstance(c.get("id"), str)
                                                   and all(c.get(s) is None or isinstance(c[s], dict)
                                                           for s in ("before", "after")) for c in edit)
                    for edit in stack):
                raise UnetsegError(f"{path}: field {key!r} must be a list of edits (lists of id, before, after)")
        layers = d.get("layers", [])
        if not isinstance(layers, list) or not all(isinstance(x, dict) and isinstance(x.get("name"), str)
                                                   and isinstance(x.get("events"), list) for x in layers):
            raise UnetsegError(f"{path}: field 'layers' must be a list of tables (name, events)")
        for layer in layers:
            for i, e in enumerate(layer["events"]):
                if not isinstance(e, dict):
                    raise UnetsegError(f"{path}: layer {layer['name'][:40]!r} row {i + 1} is not an object")
                self._checked_box(e, f"{path}: layer {layer['name'][:40]!r} row {i + 1}")
        score = d.get("view", {}).get("min_score", 0.0) if isinstance(d.get("view", {}), dict) else None
        if not _finite(score) or not 0 <= score <= 1:
            raise UnetsegError(f"{path}: field 'view' must be an object whose min_score lies in [0, 1]")

    def set_view(self, min_score: float) -> None:
        """The page's score threshold, kept with the review."""
        if not _finite(min_score) or not 0 <= min_score <= 1:
            raise UnetsegError(f"min_score must lie in [0, 1], not {min_score!r}")
        self.data.setdefault("view", {})["min_score"] = float(min_score)
        self.save()

    def add_layer(self, name: str, events: list[Event]) -> dict[str, Any]:
        """Another person's table as a reference layer (drawn, never edited or trained on)."""
        if len(events) > MAX_LAYER_EVENTS:
            raise UnetsegError(f"{name}: {len(events)} rows, over {MAX_LAYER_EVENTS} for a layer")
        layer = {"name": name[:100], "events": [{"begin": e.begin, "end": e.end, "low": e.low, "high": e.high,
                                                 "label": e.label} for e in events]}
        for i, e in enumerate(layer["events"]):
            self._checked_box(e, f"{name}: row {i + 1}")
        self.data["layers"] = [x for x in self.data.get("layers", []) if x["name"] != layer["name"]] + [layer]
        self.save()
        return layer

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

    def model_band(self) -> tuple[float, float]:
        """The band (Hz) the model's spectrogram holds: what a time-only event spans."""
        spec = self.data["spectrogram"]
        rate = spec.get("sample_rate") or self.data["sample_rate"]
        top = min(spec.get("fmax") or rate / 2, rate / 2, self.nyquist)
        return float(min(spec.get("fmin") or 0.0, top)), float(top)

    def export(self, fmt: str = "raven", deleted: bool = False) -> str:
        """The corrected table (Raven, Audacity or CSV), with a ``Review`` column of each event's state (Raven
        and CSV; Audacity labels have no columns); deleted events only when ``deleted``. Raven's Selection is
        the event's number on the page, and a time-only event's band is the model's (Raven draws every row as
        a box)."""
        rows = sorted((e for e in self.events if deleted or e["state"] != "deleted"), key=lambda e: e["begin"])
        events = [_event(e) for e in rows]
        states = [e["state"] for e in rows]
        if fmt == "raven":
            low, high = self.model_band()
            boxed = [e if e.low is not None else Event(e.begin, e.end, low, high, e.label, e.score) for e in events]
            table = _with_column(format_raven(boxed), "\t", "Review", states)
            return _renumbered(table, [number_of(e, i) for i, e in enumerate(rows, 1)])
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
        return self._commit(event, updated, overwrote, dict(event))

    def add(self, fields: dict[str, Any]) -> Change:
        """A new event drawn by a person (state ``added``)."""
        unknown = set(fields) - {"begin", "end", "low", "high", "label"}
        if unknown:
            raise UnetsegError(f"unknown event field(s) {', '.join(sorted(unknown))}")
        event = {"id": f"e{self._next_number()}", "begin": None, "end": None, "low": None, "high": None, "label": "",
                 "score": None, "state": "added", "detected": None, "revision": 0, **fields}
        self._checked_box(event, "new event")
        self.events.append(event)
        return self._commit(event, event, False, None)

    def _find(self, event_id: str) -> dict[str, Any]:
        event = next((e for e in self.events if e["id"] == event_id), None)
        if event is None:
            raise KeyError(event_id)
        return event

    def _next_number(self) -> int:
        """The number a new event takes: one past the highest (numbers are never reused while taken)."""
        return 1 + max((number_of(e, 0) for e in self.events), default=0)

    def add_many(self, boxes: list[dict[str, Any]], state: str = "unreviewed") -> list[dict[str, Any]]:
        """New events (detected by a fine-tuned model, or read from a table) in one edit, undone as one."""
        number = self._next_number()
        added = []
        for i, box in enumerate(boxes):
            event = {"id": f"e{number + i}", "low": None, "high": None, "label": "", "score": None, **box,
                     "state": state, "revision": self.data["revision"] + 1}
            event["detected"] = {k: event[k] for k in ("begin", "end", "low", "high", "label", "score")}
            self._checked_box(event, f"new event {i + 1}")
            added.append(event)
        if added:
            self.events.extend(added)
            self._remember([{"id": e["id"], "before": None, "after": dict(e)} for e in added])
            self.data["revision"] += 1
            self.save()
        return added

    def _commit(self, old: dict[str, Any], new: dict[str, Any], overwrote: bool,
                before: dict[str, Any] | None) -> Change:
        self.data["revision"] += 1
        new = {**new, "revision": self.data["revision"]}
        old.clear()
        old.update(new)
        self._remember([{"id": new["id"], "before": before, "after": dict(new)}])
        self.save()
        return Change(dict(old), self.data["revision"], overwrote)

    # ------------------------------------------------------------------------------------------ history

    def _remember(self, changes: list[dict[str, Any]]) -> None:
        history = self.data.setdefault("history", [])
        history.append(changes)
        del history[:-MAX_HISTORY]
        self.data["future"] = []  # a new edit ends what could be redone

    def undo(self) -> list[dict[str, Any]]:
        """Take back the last edit (kept in ``review.json``, so also after a reload); returns the events it
        touched as they are now (an undone addition is gone)."""
        return self._replay("history", "future", "before")

    def redo(self) -> list[dict[str, Any]]:
        """Make the last undone edit again."""
        return self._replay("future", "history", "after")

    def _replay(self, source: str, target: str, side: str) -> list[dict[str, Any]]:
        stack = self.data.get(source) or []
        if not stack:
            raise UnetsegError(f"nothing to {'undo' if source == 'history' else 'redo'}")
        changes = stack.pop()
        self.data["revision"] += 1
        touched = []
        for c in reversed(changes) if side == "before" else changes:
            state = c[side]
            self.data["events"] = [e for e in self.events if e["id"] != c["id"]]
            if state is not None:
                state = {**state, "revision": self.data["revision"]}
                self._checked_box(state, f"event {c['id']} in the review's history")
                self.events.append(state)
            touched.append(state or {"id": c["id"], "removed": True})
        self.data.setdefault(target, []).append(changes)
        self.save()
        return touched

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


def number_of(event: dict[str, Any], fallback: int) -> int:
    """An event's number as the page shows it: that of its id ``e<N>`` (stable: an added event takes the next
    number, nothing is renumbered)."""
    match = re.fullmatch(r"e(\d{1,9})", str(event.get("id", "")))
    return int(match.group(1)) if match else fallback


def _renumbered(table: str, numbers: list[int]) -> str:
    lines = table.splitlines()
    rows = [f"{n}\t{line.split(chr(9), 1)[1]}" for line, n in zip(lines[1:], numbers, strict=True)]
    return "\n".join([lines[0], *rows]) + "\n"


def _with_column(table: str, sep: str, name: str, values: list[str]) -> str:
    """A table (header line, then one line per value) with one more column (Raven keeps extra columns as
    annotations)."""
    lines = table.splitlines()
    rows = [f"{line}{sep}{v}" for line, v in zip(lines[1:], values, strict=True)]
    return "\n".join([lines[0] + sep + name, *rows]) + "\n"


def _finite(value: Any) -> bool:
    import math

    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _event(e: dict[str, Any]) -> Event:
    return Event(float(e["begin"]), float(e["end"]), e.get("low"), e.get("high"), e.get("label", ""), e.get("score"))
