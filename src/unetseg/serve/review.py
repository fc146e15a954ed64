"""``/reviews``: people review a recording's events in the page (or any client) and the corrections are kept
in the review folder (``unetseg serve --review DIR``).

A review is reached by its name only; names are plain folder names checked before any path is made, so no
request reads or writes outside the review folder. Every change is saved at once (an atomic write); two
tabs changing one event: the last write wins and its answer says ``overwrote``.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from unetseg.audio.annotations import SUFFIXES
from unetseg.audio.review import MAX_LABEL, STATES, Review
from unetseg.audio.review_files import safe_name
from unetseg.audio.review_store import ReviewStore, create_review
from unetseg.core.errors import UnetsegError
from unetseg.core.recent import Recent
from unetseg.serve.audio import check_recording, detect_upload
from unetseg.serve.models import ServedModel
from unetseg.serve.state import ServerState, bad, shown_name

router = APIRouter(prefix="/reviews", tags=["review"])
MAX_TILE = 4096  # pixels
MAX_TILE_SECONDS = 600.0  # the page's widest tile is 512 s (1 px/s)


class EventChange(BaseModel):
    """Fields of an event to change (those left out keep their values); ``seen`` is the event's revision the
    writer last saw, so that the answer can say whether it replaced another writer's edit."""

    model_config = ConfigDict(extra="forbid", strict=True)  # true is not 1.0 s, "5" is not 5 Hz
    begin: float | None = Field(None, description="seconds from the start of the recording")
    end: float | None = Field(None, description="seconds")
    low: float | None = Field(None, description="Hz (null with high: the whole band)")
    high: float | None = Field(None, description="Hz")
    label: str | None = Field(None, max_length=MAX_LABEL)
    state: Literal[STATES] | None = None  # type: ignore[valid-type]
    seen: int | None = Field(None, ge=0)


class NewEvent(BaseModel):
    """A box drawn by a person."""

    model_config = ConfigDict(extra="forbid", strict=True)
    begin: float
    end: float
    low: float | None = None
    high: float | None = None
    label: str = Field("", max_length=MAX_LABEL)


def review_store(request: Request) -> ReviewStore:
    """The server's review folder."""
    return request.app.state.reviews


def open_review(request: Request, name: str) -> Review:
    """The review named ``name``, or a one-line 4xx."""
    try:
        return review_store(request).load(name)
    except KeyError:
        raise bad(404, f"no review named {name!r}; GET /reviews lists them") from None
    except UnetsegError as e:  # a bad name, or a review.json that is damaged or names a file outside
        raise bad(400 if "not a plain name" in str(e) else 422, f"review {name!r}: {hide_paths(request, e)}") from None


def hide_paths(request: Request, error: Exception) -> str:
    """An error's text without the server's folders."""
    return review_store(request).hide(str(error))


def document(review: Review) -> dict[str, Any]:
    """A review as the page reads it: its events and states, and the spectrogram's rows in Hz."""
    from unetseg.audio.spectrogram import SpectrogramConfig, row_frequencies

    d = review.data
    cfg = SpectrogramConfig.from_dict(d["spectrogram"])
    sr = cfg.sample_rate or d["sample_rate"]
    return {"name": review.name, "recording": review.recording.name, "duration": d["duration"],
            "sample_rate": d["sample_rate"], "spectrogram_rate": sr, "model": d.get("model"),
            "classes": d["classes"], "row_hz": [round(float(v), 1) for v in row_frequencies(cfg, sr)],
            "column_s": cfg.hop_length / sr, "revision": d["revision"], "updated": d.get("updated"),
            "denoised": (review.folder / "denoised.wav").is_file(), "states": review.counts(),
            "model_band": review.model_band(), "view": {"min_score": 0.0, **d.get("view", {})},
            "layers": d.get("layers", []), "undo": len(d.get("history", [])), "redo": len(d.get("future", [])),
            "events": review.events}


@router.get("")
def list_reviews(request: Request) -> list[dict[str, Any]]:
    """Every review in the review folder: name, recording, duration, model, events and counts per state."""
    return review_store(request).list()


@router.post("")
async def new_review(request: Request, model: str | None = None, name: str | None = Query(None, max_length=200),
                     denoise: bool = False, detect: bool = True) -> JSONResponse:
    """Upload a recording: the model detects its events and a new review of them is made (``name``, e.g. the
    file's name, names the review folder; a taken name gets ``-2``, ``-3``...). ``detect=false`` makes an
    empty review to annotate from scratch (on the built-in prior's spectrogram, so that "find the rest" can
    start from it). A recording reviewed before (the same bytes) opens its review instead: 200 with
    ``existing: true``."""
    server: ServerState = request.app.state.server
    served = server.pick(model, "audio") if detect else None
    with tempfile.TemporaryDirectory(prefix="unetseg-upload-") as tmp:
        path = await server.upload(request, Path(tmp))
        return await review_response(request, path, shown_name(name), served,
                                     Path(tmp) / "denoised.wav" if denoise else None, move=True)


async def review_response(request: Request, path: Path, shown: str, served: ServedModel | None,
                          denoised: Path | None, move: bool) -> JSONResponse:
    """The review of the recording at ``path`` (an upload, or one of ``--recordings``): its existing review
    when the same bytes were reviewed before (200, ``existing``), else a new one (201) of ``served``'s events,
    or with none on the prior's spectrogram (each file's own rate) when ``served`` is None; ``move`` moves
    the recording into the review folder. Errors name it ``shown``."""
    from unetseg.audio.review_files import file_sha256
    from unetseg.audio.spectrogram import PRESETS

    server: ServerState = request.app.state.server
    store = review_store(request)
    same = await asyncio.to_thread(lambda: store.same_recording(file_sha256(path)))  # off the event loop
    if same is not None:
        return JSONResponse({**document(store.load(same)), "existing": True})
    with server.admission:
        if served is None:
            check_recording(server, path, shown)
            review = await asyncio.to_thread(create_review, store.root, safe_name(shown), path, [], {"name": None},
                                             PRESETS["prior"].to_dict(), ["background", "call"], move)
        else:
            result = await detect_upload(server, served, path, denoised, shown)
            review = await asyncio.to_thread(
                create_review, store.root, safe_name(shown), path, result.events,
                {"name": served.name, "sha256": served.loaded.digest}, served.detector.cfg.to_dict(),
                list(served.loaded.meta["classes"]), move)
            if denoised is not None:
                denoised.replace(review.folder / "denoised.wav")
    return JSONResponse(document(review), status_code=201)


@router.get("/{name}")
def get_review(request: Request, name: str) -> dict[str, Any]:
    """One review: its recording's facts, the spectrogram's rows (Hz, top first), and every event with its
    state (unreviewed, accepted, corrected, added, deleted) and revision."""
    return document(open_review(request, name))


def _changed(request: Request, name: str, action: Any) -> JSONResponse:
    store = review_store(request)
    with store.lock(name):
        review = open_review(request, name)
        try:
            change = action(review)
        except KeyError as e:
            raise bad(404, f"review {name!r} has no event {e.args[0]!r}") from None
        except UnetsegError as e:
            raise bad(400, hide_paths(request, e)) from None
    return JSONResponse({"event": change.event, "revision": change.revision, "overwrote": change.overwrote,
                         "states": review.counts()})


@router.patch("/{name}/events/{event_id}")
def change_event(request: Request, name: str, event_id: str, body: EventChange) -> JSONResponse:
    """Move, resize, relabel, accept or restore one event. A box or label change makes a detected event
    ``corrected`` (an added one stays ``added``) unless ``state`` is given."""
    fields = body.model_dump(exclude_unset=True)
    seen = fields.pop("seen", None)
    return _changed(request, name, lambda r: r.change(event_id, fields, seen))


@router.delete("/{name}/events/{event_id}")
def delete_event(request: Request, name: str, event_id: str, seen: int | None = Query(None, ge=0)) -> JSONResponse:
    """Mark one event deleted (it stays in the review, left out of the corrected table)."""
    return _changed(request, name, lambda r: r.change(event_id, {"state": "deleted"}, seen))


@router.post("/{name}/events")
def add_event(request: Request, name: str, body: NewEvent) -> JSONResponse:
    """A new event (state ``added``)."""
    return _changed(request, name, lambda r: r.add(body.model_dump()))


@router.get("/{name}/export")
def export(request: Request, name: str, format: str = Query("raven", pattern="^(raven|audacity|csv)$"),
           deleted: bool = False) -> PlainTextResponse:
    """The corrected table as Raven (with a ``Review`` column), Audacity labels or CSV (with a ``review``
    column); deleted events only with ``deleted=true``."""
    review = open_review(request, name)
    text = review.export(format, deleted)
    filename = f"{review.name}.reviewed{SUFFIXES[format]}"
    return PlainTextResponse(text, media_type="text/csv" if format == "csv" else "text/plain",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})


COLOURS = ("grey", "viridis", "magma", "inferno")


@router.get("/{name}/tile")
async def tile(request: Request, name: str, begin: float = Query(..., ge=0),
               seconds: float = Query(..., gt=0, le=MAX_TILE_SECONDS),
               width: int = Query(512, ge=1, le=MAX_TILE),
               view: Literal["model", "file"] = Query("model", description="the model's image, or the file's "
                                                      "whole band at its own rate"),
               fft: int = Query(1024, ge=64, le=16384, description="FFT length of view=file (a power of two)"),
               colours: Literal[COLOURS] = "grey") -> Response:  # type: ignore[valid-type]
    """A PNG of the spectrogram of ``[begin, begin + seconds)``, ``width`` pixels wide (the loudest column
    per pixel when zoomed out): as many rows as the model's image (``view=model``), or ``fft / 2`` rows of
    the file's own band, 0 Hz to its Nyquist frequency less a bin (``view=file``, hop ``fft / 4``), top row
    highest."""
    if fft & (fft - 1):
        raise bad(400, f"fft must be a power of two, not {fft}")
    review = open_review(request, name)
    if begin >= review.duration:
        raise bad(400, f"begin {begin:g} s is past the recording's end ({review.duration:.3f} s)")
    key = (review.name, review.data["recording"], round(begin, 6), round(seconds, 6), width, view, fft, colours)
    cache: Recent[bytes] = request.app.state.tiles
    png = cache.get(key)
    if png is None:
        server: ServerState = request.app.state.server
        try:
            with server.admission:  # a tile's STFT is work like a detection: it takes a place in the queue
                png = await asyncio.to_thread(_tile_png, review, begin, seconds, width, view, fft, colours)
        except UnetsegError as e:
            raise bad(404 if "not found" in str(e) else 400,
                      hide_paths(request, e).replace(str(review.recording), review.recording.name)) from None
        cache.put(key, png)
    return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})


def _tile_png(review: Review, begin: float, seconds: float, width: int, view: str = "model", fft: int = 1024,
              colours: str = "grey") -> bytes:
    import cv2

    from unetseg.audio.spectrogram import SpectrogramConfig
    from unetseg.audio.view import spectrogram_tile

    cfg = (SpectrogramConfig.from_dict(review.data["spectrogram"]) if view == "model"
           else SpectrogramConfig(sample_rate=None, n_fft=fft, hop_length=fft // 4))
    image = spectrogram_tile(review.recording, cfg, begin, seconds, width)
    if colours != "grey":
        maps = {"viridis": cv2.COLORMAP_VIRIDIS, "magma": cv2.COLORMAP_MAGMA, "inferno": cv2.COLORMAP_INFERNO}
        image = cv2.applyColorMap(image, maps[colours])
    ok, png = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    return png.tobytes()


@router.get("/{name}/overview")
async def overview(request: Request, name: str, width: int = Query(800, ge=16, le=MAX_TILE)) -> dict[str, Any]:
    """The whole recording's loudness in ``width`` bins (dB re full scale, the loudest 10 ms in each), for the
    page's overview strip; read a block at a time (bounded memory)."""
    from unetseg.audio.view import loudness_line

    review = open_review(request, name)
    key = ("overview", review.name, review.data["recording"], width)
    cache: Recent[Any] = request.app.state.tiles
    line = cache.get(key)
    if line is None:
        server: ServerState = request.app.state.server
        try:
            with server.admission:
                line = await asyncio.to_thread(loudness_line, review.recording, width)
        except UnetsegError as e:
            raise bad(400, hide_paths(request, e).replace(str(review.recording), review.recording.name)) from None
        cache.put(key, line)
    return {"width": width, "seconds": review.duration, "db": line}


@router.get("/{name}/audio")
async def clip(request: Request, name: str, begin: float = Query(..., ge=0), end: float = Query(..., gt=0),
               low: float | None = Query(None, ge=0), high: float | None = Query(None, gt=0),
               denoised: bool = False) -> Response:
    """``[begin, end)`` s of the recording (at most 600 s) as a WAV at its own rate, band-passed to
    ``low``-``high`` Hz when given; ``denoised=true`` takes the denoised recording (at the model's rate)."""
    from unetseg.audio.view import clip_wav

    review = open_review(request, name)
    source = review.folder / "denoised.wav" if denoised else review.recording
    if denoised and not source.is_file():
        raise bad(404, f"review {name!r} has no denoised recording (upload with denoise=true)")
    server: ServerState = request.app.state.server
    try:
        with server.admission:  # filtering a long clip costs memory: it takes a place in the queue
            wav = await asyncio.to_thread(clip_wav, source, begin, min(end, review.duration), low, high)
    except UnetsegError as e:
        raise bad(400, hide_paths(request, e).replace(str(source), source.name)) from None
    return Response(wav, media_type="audio/wav")
