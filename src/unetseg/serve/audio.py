"""``POST /detect``: a recording -> its events (JSON, Raven, Audacity or CSV), with links to the denoised
audio and the spectrogram."""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from PIL import Image

from unetseg.audio.annotations import format_audacity, format_csv, format_raven
from unetseg.audio.recordings import audio_info
from unetseg.core.errors import UnetsegError
from unetseg.serve.models import ServedModel
from unetseg.serve.state import ServerState, bad, shown_name

router = APIRouter()
FORMATS = ("json", "raven", "audacity", "csv")  # of /detect's answer


@router.post("/detect")
async def detect(request: Request, model: str | None = None,
                 format: str = Query("json", pattern=f"^({'|'.join(FORMATS)})$"), denoise: bool = False,
                 spectrogram: bool = False,
                 name: str | None = Query(None, max_length=200, description="the file's name, for errors only")
                 ) -> Response:
    """A recording (any format ``audio detect`` reads) -> events as JSON, a Raven table, Audacity labels or
    CSV. ``denoise=true`` adds a link to the denoised WAV and ``spectrogram=true`` one to a spectrogram
    PNG (JSON only); each link can be fetched once."""
    server: ServerState = request.app.state.server
    served = server.pick(model, "audio")
    with tempfile.TemporaryDirectory(prefix="unetseg-upload-") as tmp:
        folder = Path(tmp)
        path = await server.upload(request, folder)
        with server.admission:  # a place among the requests at work, once the body is here (503 when none is free)
            return await _detect_response(server, served, path, folder, format, denoise, spectrogram,
                                          shown_name(name))


async def detect_upload(server: ServerState, served: ServedModel, path: Path, denoised: Path | None,
                        shown: str) -> Any:
    """The uploaded recording's ``DetectResult`` (and its denoised audio at ``denoised``), refusing one over
    ``--max-seconds`` from its header (413); errors name it ``shown`` (400). For ``/detect`` and ``/reviews``."""
    check_recording(server, path, shown)
    try:
        return await asyncio.to_thread(_detect, served, path, denoised)
    except UnetsegError as e:
        raise bad(400, str(e).replace(str(path), shown)) from None


def check_recording(server: ServerState, path: Path, shown: str) -> None:
    """A readable recording within ``--max-seconds`` (413), from its header; errors name it ``shown`` (400)."""
    try:
        info = audio_info(path)
    except UnetsegError as e:
        raise bad(400, str(e).replace(str(path), shown)) from None
    if info.duration > server.options.max_seconds:
        raise bad(413, f"{shown}: recording of {info.duration:.0f} s is over the limit of "
                  f"{server.options.max_seconds:g} s (--max-seconds)")


async def _detect_response(server: ServerState, served: ServedModel, path: Path, folder: Path, format: str,
                           denoise: bool, spectrogram: bool, shown: str) -> Response:
    denoised = folder / "denoised.wav" if denoise else None
    result = await detect_upload(server, served, path, denoised, shown)
    try:
        picture = await asyncio.to_thread(_spectrogram_png, served, path, folder) if spectrogram else None
    except UnetsegError as e:
        raise bad(400, str(e).replace(str(path), shown)) from None
    events = result.events
    if format != "json":
        text = {"raven": format_raven, "audacity": format_audacity, "csv": format_csv}[format](events)
        return PlainTextResponse(text, media_type="text/csv" if format == "csv" else "text/plain")
    body: dict[str, Any] = {
        "model": served.name, "duration": round(result.duration, 4), "sample_rate": result.sample_rate,
        "events": [{k: v for k, v in dataclasses.asdict(e).items() if k != "file"} for e in events],
        "raven": format_raven(events)}
    if denoised is not None:
        body["denoised"] = server.store.add(denoised, "audio/wav")
    if picture is not None:
        png, rows_hz = picture
        body["spectrogram"] = {"url": server.store.add(png, "image/png"), "seconds": result.duration,
                               "row_hz": rows_hz}
    return JSONResponse(body)


def _detect(served: ServedModel, path: Path, denoised: Path | None) -> Any:
    with served.lock:  # one recording at a time per model: its memory stays bounded
        return served.detector.run(path, denoise=denoised)


def _spectrogram_png(served: ServedModel, path: Path, folder: Path, max_width: int = 2400
                     ) -> tuple[Path, list[float]]:
    """The recording's spectrogram as the model sees it, narrowed to ``max_width`` columns for the page."""
    import cv2

    from unetseg.audio.recordings import load_audio
    from unetseg.audio.spectrogram import spectrogram_image

    cfg = served.detector.cfg
    y, sr = load_audio(path, cfg.sample_rate)
    image, mapping = spectrogram_image(y, sr, cfg)
    if image.shape[1] > max_width:
        image = cv2.resize(image, (max_width, image.shape[0]), interpolation=cv2.INTER_AREA)
    out = folder / "spectrogram.png"
    Image.fromarray(image).save(out, format="PNG")
    return out, [float(v) for v in mapping.row_hz]
