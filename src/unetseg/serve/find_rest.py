""""Find the rest": after a person has drawn a few boxes in a recording, the model is fine-tuned on them in
the background (``audio dataset --preset prior --annotated until-last-box``, then ``train``, which starts
from the built-in call prior on boxes, then ``audio detect``: the steps the few-shot benchmark measures),
and its detections after the last reviewed box join the review as unreviewed events, in one edit (undone
as one). Each step runs in a child process: the server keeps its memory and answers the page meanwhile."""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from unetseg.audio.annotations import Event, format_raven, read_annotations
from unetseg.audio.review import REVIEWED, Review
from unetseg.audio.review_store import ReviewStore
from unetseg.core.errors import UnetsegError
from unetseg.serve.review import open_review
from unetseg.serve.state import bad

log = logging.getLogger(__name__)
router = APIRouter(prefix="/reviews", tags=["review"])
PHASES = {"dataset": (0.0, 0.1), "training": (0.1, 0.85), "detecting": (0.85, 1.0)}  # share of the bar


@dataclass
class Job:
    """One review's search: its phase, and what came of it."""

    review: str
    minutes: float
    shots: int
    after: float  # seconds: detections from here on are added
    phase: str = "dataset"
    started: float = field(default_factory=time.monotonic)
    phase_started: float = field(default_factory=time.monotonic)
    added: int | None = None
    error: str | None = None
    process: subprocess.Popen | None = None
    cancelled: bool = False

    def describe(self) -> dict[str, Any]:
        lo, hi = PHASES.get(self.phase, (1.0, 1.0))
        spent = time.monotonic() - self.phase_started
        share = min(1.0, spent / (self.minutes * 60 + 20)) if self.phase == "training" else min(0.9, spent / 30)
        done = self.phase in ("done", "failed", "cancelled")
        return {"review": self.review, "phase": self.phase, "shots": self.shots, "after": self.after,
                "progress": 1.0 if done else round(lo + (hi - lo) * share, 3),
                "elapsed_s": round(time.monotonic() - self.started, 1), "training_minutes": self.minutes,
                "added": self.added, "error": self.error, "done": done}


class Searches:
    """The searches of one server, one per review at a time."""

    def __init__(self, store: ReviewStore, minutes: float) -> None:
        self.store, self.minutes = store, minutes
        self.jobs: dict[str, Job] = {}
        self.guard = threading.Lock()

    def start(self, review: Review) -> Job:
        shots = [e for e in review.events if e["state"] in REVIEWED]
        if not shots:
            raise UnetsegError("draw, correct or accept a few boxes first (say 5): the search learns from the "
                               "reviewed events")
        with self.guard:
            running = self.jobs.get(review.name)
            if running is not None and not running.describe()["done"]:
                raise UnetsegError(f"a search of {review.name} is running ({running.phase}); wait for it or cancel it")
            job = Job(review.name, self.minutes, len(shots), max(e["end"] for e in shots))
            self.jobs[review.name] = job
        threading.Thread(target=self._run, args=(job, review, shots), daemon=True,
                         name=f"find-{review.name}").start()
        return job

    def cancel(self, name: str) -> Job | None:
        job = self.jobs.get(name)
        if job is not None and not job.describe()["done"]:
            job.cancelled = True
            if job.process is not None:
                job.process.kill()
        return job

    def close(self) -> None:
        for name in list(self.jobs):
            self.cancel(name)

    def _run(self, job: Job, review: Review, shots: list[dict[str, Any]]) -> None:
        with tempfile.TemporaryDirectory(prefix="unetseg-find-") as tmp:
            try:
                found = self._search(job, review, shots, Path(tmp))
                with self.store.lock(job.review):  # the review as it is now: edits made meanwhile are kept
                    now = self.store.load(job.review)
                    job.added = len(now.add_many(new_events(now, found, job.after)))
                job.phase = "done"
            except Exception as e:  # noqa: BLE001 - the page shows any failure as one line
                job.phase = "cancelled" if job.cancelled else "failed"
                job.error = None if job.cancelled else self.store.hide(" ".join(str(e).split()))[:300]
                if not job.cancelled:
                    log.warning("find the rest in %s failed: %s", job.review, job.error)

    def _search(self, job: Job, review: Review, shots: list[dict[str, Any]], work: Path) -> list[Event]:
        recording = review.recording
        folder = work / "shots"
        folder.mkdir()
        (folder / recording.name).symlink_to(recording.resolve())
        boxes = [Event(e["begin"], e["end"], e.get("low"), e.get("high"), e.get("label") or "call") for e in shots]
        (folder / f"{recording.stem}.selections.txt").write_text(format_raven(boxes), encoding="utf-8")
        self._step(job, "dataset", ["audio", "dataset", "--audio", str(folder), "--output", str(work / "dataset"),
                                    "--preset", "prior", "--annotated", "until-last-box", "--paste", "4"])
        self._step(job, "training", ["train", "--data", str(work / "dataset"), "--max-time", f"{job.minutes:g}",
                                     "--runs-dir", str(work / "runs"), "--name", "find", "--no-progress",
                                     "--no-test"])
        model = work / "runs" / "find" / "weights" / "best.safetensors"
        self._step(job, "detecting", ["audio", "detect", "--model", str(model), "--input", str(recording),
                                      "--output", str(work / "found")])
        return read_annotations(work / "found" / "events.csv")

    def _step(self, job: Job, phase: str, args: list[str]) -> None:
        if job.cancelled:
            raise UnetsegError("cancelled")
        job.phase, job.phase_started = phase, time.monotonic()
        job.process = subprocess.Popen([sys.executable, "-m", "unetseg", *args], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.PIPE, text=True)
        _, err = job.process.communicate()
        if job.process.returncode != 0:
            lines = [line for line in (err or "").splitlines() if line.strip()]
            raise UnetsegError(f"{phase}: {lines[-1] if lines else f'exit {job.process.returncode}'}")


def new_events(review: Review, found: list[Event], after: float) -> list[dict[str, Any]]:
    """Detections that start after ``after`` s and are not already in the review (a kept event covering half
    of one's span in an overlapping band), as new events."""
    kept = [e for e in review.events if e["state"] != "deleted"]

    def known(d: Event) -> bool:
        for e in kept:
            overlap = min(d.end, e["end"]) - max(d.begin, e["begin"])
            bands = (d.low is None or e.get("low") is None
                     or min(d.high, e["high"]) > max(d.low, e["low"]))
            if overlap > 0.5 * (d.end - d.begin) and bands:
                return True
        return False

    top = review.nyquist
    return [{"begin": round(d.begin, 4), "end": round(min(d.end, review.duration), 4),
             "low": None if d.low is None else round(max(0.0, d.low), 1),
             "high": None if d.high is None else round(min(d.high, top), 1), "label": d.label,
             "score": None if d.score is None else round(d.score, 4)}
            for d in sorted(found, key=lambda d: d.begin) if d.begin >= after and not known(d)]


def _searches(request: Request) -> Searches:
    return request.app.state.searches


@router.post("/{name}/find", status_code=202)
def find_rest(request: Request, name: str) -> dict[str, Any]:
    """Fine-tune on the review's reviewed boxes (accepted, corrected, added) in the background, then add the
    detections after the last of them as unreviewed events; GET this path for the progress."""
    review = open_review(request, name)
    try:
        return _searches(request).start(review).describe()
    except UnetsegError as e:
        raise bad(409 if "is running" in str(e) else 400, str(e)) from None


@router.get("/{name}/find")
def find_progress(request: Request, name: str) -> dict[str, Any]:
    """The search's phase (dataset, training, detecting, done, failed, cancelled), progress 0-1, and the
    events it added."""
    open_review(request, name)
    job = _searches(request).jobs.get(name)
    if job is None:
        raise bad(404, f"no search of review {name!r} was started; POST this path to start one")
    return job.describe()


@router.delete("/{name}/find")
def cancel_search(request: Request, name: str) -> dict[str, Any]:
    """Stop the review's running search (nothing is added)."""
    open_review(request, name)
    job = _searches(request).cancel(name)
    if job is None:
        raise bad(404, f"no search of review {name!r} was started")
    return job.describe()


