"""``unetseg serve``: an HTTP API and a web page on the inference engine (FastAPI).

Models load once per process. Image requests that arrive together run as one batch (``Batcher``); a
bounded number of requests may be at work at once and the rest get 503 with Retry-After at once. A request
takes its place only once its body is read: a slow upload holds no place (and each piece of it must arrive
within ``read_timeout`` s, else 408). Uploads are limited in bytes, pixels and seconds; client file names
never reach the disk (an upload is saved as ``upload.bin`` in a temporary folder removed after the request,
also after errors).
"""

from __future__ import annotations

import secrets
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask

from unetseg.audio.review_store import ReviewStore
from unetseg.core.recent import Recent
from unetseg.serve import audio, find_rest, images, recordings, review, review_edits
from unetseg.serve.batcher import Busy
from unetseg.serve.models import ServedModel, ServeOptions, load_models
from unetseg.serve.state import ServerState, bad
from unetseg.version import __version__

STATIC = Path(__file__).parent / "static"


def create_app(models: dict[str, ServedModel], options: ServeOptions | None = None) -> FastAPI:
    """The FastAPI application serving ``models`` under ``options``: ``/predict`` (``images``), ``/detect``
    (``audio``), and here the health, model list, linked files, the page and the guard of every request."""
    options = options or ServeOptions()
    server = ServerState(models, options)
    kept = options.review is not None  # else reviews live in a temporary folder, gone when the server stops
    scratch = None if kept else tempfile.TemporaryDirectory(prefix="unetseg-reviews-")
    reviews = ReviewStore(options.review if kept else scratch.name)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.searches.close()
        server.close()
        if scratch is not None:
            scratch.cleanup()

    app = FastAPI(title="unetseg", version=__version__, lifespan=lifespan,
                  description="Segmentation masks of images and sound events of recordings from unetseg model "
                  "files, and the review of a recording's events (/reviews): people accept, correct, add and "
                  "delete events, kept in the review folder and exported as Raven, Audacity or CSV tables.")
    app.state.server = server
    app.state.models = models
    app.state.reviews, app.state.tiles = reviews, Recent(256)  # the last 256 tiles (PNG bytes)
    app.state.searches = find_rest.Searches(reviews, options.find_minutes)
    if options.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=options.cors, allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    public = {"/health", "/", "/favicon.ico"}

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if options.token and path not in public and not path.startswith("/static/"):
            given = request.headers.get("authorization", "")
            if not secrets.compare_digest(given.encode(), f"Bearer {options.token}".encode()):
                return JSONResponse({"detail": "missing or wrong bearer token (Authorization: Bearer <token>)"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > server.limit + 65536:
            return JSONResponse({"detail": f"upload of {int(length) / 2**20:.1f} MB is over the limit of "
                                 f"{options.max_upload_mb:g} MB (--max-upload-mb)"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "request"
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.exception_handler(Busy)
    async def busy(_request: Request, _exc: Busy) -> JSONResponse:
        return JSONResponse({"detail": f"busy: {options.queue} requests are in progress; retry shortly"},
                            status_code=503, headers={"Retry-After": "1"})

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness: always public."""
        return {"status": "ok", "version": __version__, "models": len(models), "auth": bool(options.token),
                "in_progress": server.admission.count, "queue": options.queue,
                "reviews": "kept" if kept else "temporary", "recordings": bool(options.recordings)}

    @app.get("/models")
    def list_models() -> list[dict[str, Any]]:
        """Each served model's metadata: kind (image or audio), classes, colours, input."""
        return [m.describe() for m in models.values()]

    app.include_router(images.router)
    app.include_router(audio.router)
    app.include_router(review.router)
    app.include_router(review_edits.router)
    app.include_router(find_rest.router)
    app.include_router(recordings.router)

    @app.get("/files/{key}")
    def fetch(key: str) -> FileResponse:
        """A linked output (denoised audio, spectrogram), once."""
        entry = server.store.take(key)
        if entry is None:
            raise bad(404, "no such file (each link can be fetched once)")
        path, media = entry
        return FileResponse(path, media_type=media, background=BackgroundTask(path.unlink, missing_ok=True))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def serve(model_paths: list[str | Path], host: str = "127.0.0.1", port: int = 8000,
          options: ServeOptions | None = None) -> None:
    """Load the models and run the server until interrupted."""
    import uvicorn

    options = options or ServeOptions()
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    app = create_app(load_models(model_paths, options), options)
    print(f"unetseg serve: http://{host}:{port}/ (API docs at /docs)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
