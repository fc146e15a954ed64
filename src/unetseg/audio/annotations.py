"""Annotation formats: Raven selection tables, Audacity label tracks, onset/offset CSV.

Every reader returns ``Event`` lists; every writer takes them. Formats are recognised by content.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import write_text

log = logging.getLogger(__name__)

FORMATS = ("raven", "audacity", "csv")
MAX_VALUE = 1e9  # seconds or Hz a table may give (31 years; 1 GHz)
MAX_EVENTS = 500_000  # rows of one table
MAX_LABEL = 100  # characters of a label
ONSET_COLUMNS = ("onset_s", "onset", "begin time (s)", "begin_time", "begin", "start_s", "start", "t_start")
OFFSET_COLUMNS = ("offset_s", "offset", "end time (s)", "end_time", "end", "end_s", "stop", "t_end")
LOW_COLUMNS = ("low freq (hz)", "low_freq", "low_hz", "f_low", "fmin", "min_freq")
HIGH_COLUMNS = ("high freq (hz)", "high_freq", "high_hz", "f_high", "fmax", "max_freq")
LABEL_COLUMNS = ("label", "class", "species", "annotation", "call_type", "sound_type", "name", "code")
SCORE_COLUMNS = ("score", "confidence", "probability")
REVIEW_COLUMNS = ("review",)  # a corrected table's review state (unetseg's review page): deleted rows are left out
FILE_COLUMNS = ("notated_path", "file", "filename", "audio_file", "begin file", "begin path", "recording", "path")


@dataclass(frozen=True)
class Event:
    """A sound event: time span (s), optional frequency band (Hz), label, optional score and recording."""

    begin: float
    end: float
    low: float | None = None
    high: float | None = None
    label: str = ""
    score: float | None = None
    file: str | None = None

    @property
    def duration(self) -> float:
        return self.end - self.begin


def _find(columns: list[str], names: tuple[str, ...]) -> str | None:
    lower = {c.strip().lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


def _float(value: str, where: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UnetsegError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number) or abs(number) > MAX_VALUE:
        raise UnetsegError(f"{where}: {str(value)[:40]!r} is not a finite number up to {MAX_VALUE:g} (seconds or Hz)")
    return number


def plain_label(text: str) -> bool:
    """A label a Raven, Audacity or CSV table can hold: at most 100 characters, no tab, line break or other
    control character (one would inject a row or a column)."""
    return len(text) <= MAX_LABEL and not any(ord(c) < 32 or ord(c) == 127 or c in "\u2028\u2029\x85" for c in text)


def read_annotations(path: str | Path, label_column: str | None = None) -> list[Event]:
    """Read a Raven table, an Audacity label track or an onset/offset CSV, recognised by content."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise UnetsegError(f"{path}: cannot read annotations ({e.strerror})") from e
    first = text.lstrip().split("\n", 1)[0]
    if not first:
        return []
    if "\t" in first and _find(first.split("\t"), ("begin time (s)",)):
        return _read_table(path, text, "\t", label_column)
    if _looks_like_audacity(first):
        return _read_audacity(path, text)
    return _read_table(path, text, "\t" if first.count("\t") > first.count(",") else ",", label_column)


def _looks_like_audacity(line: str) -> bool:
    parts = line.split("\t")
    if len(parts) < 2:
        return False
    try:
        float(parts[0])
        float(parts[1])
    except ValueError:
        return False
    return True


def _read_audacity(path: Path, text: str) -> list[Event]:
    events: list[Event] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        where = f"{path}:{n}"
        if parts[0] == "\\":  # the frequency line of the label above it
            if not events or len(parts) < 3:
                raise UnetsegError(f"{where}: frequency line without a label line before it")
            low, high = _float(parts[1], where), _float(parts[2], where)
            events[-1] = replace(events[-1], low=low if low > 0 or high > 0 else None, high=high if high > 0 else None)
            continue
        if len(parts) < 2:
            raise UnetsegError(f"{where}: expected 'start<TAB>end<TAB>label'")
        begin, end = _float(parts[0], where), _float(parts[1], where)
        events.append(Event(begin, end, label=parts[2].strip() if len(parts) > 2 else ""))
    return _checked(events, path)


def _read_table(path: Path, text: str, delimiter: str, label_column: str | None) -> list[Event]:
    try:
        return _table_events(path, text, delimiter, label_column)
    except csv.Error as e:  # a field over the csv module's limit, a stray quote
        raise UnetsegError(f"{path}: not a readable table ({e})") from None


def _table_events(path: Path, text: str, delimiter: str, label_column: str | None) -> list[Event]:
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = reader.fieldnames or []
    onset, offset = _find(columns, ONSET_COLUMNS), _find(columns, OFFSET_COLUMNS)
    if not onset or not offset:
        raise UnetsegError(f"{path}: no onset/offset columns among {', '.join(columns)} (expected e.g. "
                           "'Begin Time (s)'/'End Time (s)' or onset_s/offset_s)")
    low, high = _find(columns, LOW_COLUMNS), _find(columns, HIGH_COLUMNS)
    if label_column:
        if label_column not in columns:
            raise UnetsegError(f"{path}: no label column {label_column!r} (columns: {', '.join(columns)})")
        label = label_column
    else:
        label = _find(columns, LABEL_COLUMNS)
    file_col = _find(columns, FILE_COLUMNS)
    score = _find(columns, SCORE_COLUMNS)
    review = _find(columns, REVIEW_COLUMNS)
    events = []
    for n, row in enumerate(reader, 2):
        where = f"{path}:{n}"
        if delimiter == "\t" and str(row.get("View", "")).lower().startswith("waveform"):
            continue  # Raven lists each selection once per view; the spectrogram row carries the band
        if review and str(row.get(review) or "").strip().lower() == "deleted":
            continue
        events.append(Event(
            _float(row[onset], where), _float(row[offset], where),
            _float(row[low], where) if low and row[low] not in ("", None) else None,
            _float(row[high], where) if high and row[high] not in ("", None) else None,
            str(row[label]).strip() if label else "",
            _float(row[score], where) if score and row[score] not in ("", None) else None,
            file=Path(str(row[file_col])).name if file_col and row[file_col] else None,
        ))
    return _checked(events, path)


def _checked(events: list[Event], path: Path) -> list[Event]:
    if len(events) > MAX_EVENTS:
        raise UnetsegError(f"{path}: {len(events)} events, over the {MAX_EVENTS} a table may hold")
    for e in events:
        if not plain_label(e.label):
            raise UnetsegError(f"{path}: event at {e.begin:g} s has a label {e.label[:40]!r} over {MAX_LABEL} "
                               "characters or with a tab, line break or other control character")
        if e.begin < 0:
            raise UnetsegError(f"{path}: event {e.label!r} starts at a negative time ({e.begin:g} s)")
        if (e.low is not None and e.low < 0) or (e.high is not None and e.high < 0):
            raise UnetsegError(f"{path}: event {e.label!r} at {e.begin:g} s has a negative frequency")
        if e.end <= e.begin:
            raise UnetsegError(f"{path}: event {e.label!r} at {e.begin:g}-{e.end:g} s has no positive duration")
        if e.low is not None and e.high is not None and e.high < e.low:
            raise UnetsegError(f"{path}: event {e.label!r} at {e.begin:g} s has high frequency below low frequency")
    return events


def check_within(events: list[Event], duration: float, nyquist: float, source: str | Path,
                 file_nyquist: float | None = None) -> None:
    """Annotations must fall inside the recording (time) and below its Nyquist frequency: a band reaching
    above the file's own Nyquist (``file_nyquist``, default ``nyquist``) is refused, one reaching above the
    spectrogram's (after resampling) is cut there with a warning."""
    limit = file_nyquist or nyquist
    cut = 0
    for e in events:
        if e.begin >= duration or e.end > duration + 0.05:
            raise UnetsegError(f"{source}: event {e.label!r} at {e.begin:g}-{e.end:g} s lies beyond the recording's "
                               f"end ({duration:.3f} s)")
        if e.low is not None and e.low >= nyquist:
            top = (f"the spectrogram's top ({nyquist:g} Hz: it resamples to {2 * nyquist:g} Hz); keep the file's rate "
                   f"of {2 * limit:g} Hz with --sample-rate 0, or let --preset auto choose"
                   if limit > nyquist * 1.001 else f"the recording's Nyquist frequency ({nyquist:g} Hz)")
            raise UnetsegError(f"{source}: event {e.label!r} at {e.begin:g} s starts at {e.low:g} Hz, above {top}")
        if e.high is not None and e.high > limit * 1.001:
            raise UnetsegError(f"{source}: event {e.label!r} at {e.begin:g} s reaches {e.high:g} Hz, above the "
                               f"recording's Nyquist frequency ({limit:g} Hz)")
        cut += e.high is not None and e.high > nyquist * 1.001
    if cut:
        log.warning("%s: %d event band(s) reach above %g Hz, the top of the spectrogram (--sample-rate); they are "
                    "cut there", source, cut, nyquist)


def check_labels(events: list[Event], classes: list[str] | None, source: str | Path) -> None:
    """Labels that are not among ``classes`` are left out of the masks: say which, rather than train on
    silently empty masks."""
    if classes is None:
        return
    missing: dict[str, int] = {}
    for e in events:
        if e.label not in classes:
            missing[e.label] = missing.get(e.label, 0) + 1
    if missing:
        listed = ", ".join(f"{label!r} ({n})" for label, n in sorted(missing.items(), key=lambda kv: -kv[1])[:5])
        log.warning("%s: %d event(s) with labels not in --classes are left out: %s", source, sum(missing.values()),
                    listed)


def format_raven(events: list[Event]) -> str:
    header = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
              "Class", "Score"]
    lines = ["\t".join(header)]
    for i, e in enumerate(events, 1):
        lines.append("\t".join([str(i), "Spectrogram 1", "1", f"{e.begin:.4f}", f"{e.end:.4f}", _hz(e.low),
                                _hz(e.high), e.label, "" if e.score is None else f"{e.score:.4f}"]))
    return "\n".join(lines) + "\n"


def format_audacity(events: list[Event]) -> str:
    lines = []
    for e in events:
        lines.append(f"{e.begin:.6f}\t{e.end:.6f}\t{e.label}")
        if e.low is not None or e.high is not None:
            lines.append(f"\\\t{e.low or 0:.3f}\t{e.high or 0:.3f}")
    return "\n".join(lines) + ("\n" if lines else "")


def format_csv(events: list[Event]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["label", "onset_s", "offset_s", "low_hz", "high_hz", "score", "file"])
    for e in events:
        w.writerow([e.label, f"{e.begin:.6f}", f"{e.end:.6f}", _hz(e.low), _hz(e.high),
                    "" if e.score is None else f"{e.score:.4f}", e.file or ""])
    return buf.getvalue()


def _hz(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


FORMATTERS = {"raven": format_raven, "audacity": format_audacity, "csv": format_csv}
SUFFIXES = {"raven": ".selections.txt", "audacity": ".labels.txt", "csv": ".events.csv"}


def write_events(path: str | Path, events: list[Event], fmt: str = "raven") -> Path:
    if fmt not in FORMATTERS:
        raise UnetsegError(f"unknown event format {fmt!r} (choose {', '.join(FORMATS)})")
    return write_text(path, FORMATTERS[fmt](events))


def events_by_file(events: list[Event]) -> dict[str | None, list[Event]]:
    out: dict[str | None, list[Event]] = {}
    for e in events:
        out.setdefault(e.file, []).append(e)
    return out
