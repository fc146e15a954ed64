"""``unetseg serve``: an HTTP API and a web page on the inference engine (FastAPI).

Models load once per process. Image requests that arrive together run as one batch (``Batcher``); a
bounded number of requests may be at work at once and the rest get 503 with Retry-After at once. A request
takes its place only once its body is read: a slow upload holds no place (and each piece of it must arrive
within ``read_timeout`` s, else 408). Uploads are limited in bytes, pixels and seconds; client file names
never reach the disk (an upload is saved as ``upload.bin`` in a temporary folder removed after the request,
also after errors).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import logging
import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.background import BackgroundTask
from starlette.requests import ClientDisconnect

from ..errors import UnetsegError
from ..fileio import encode_mask
from ..modelfile import LoadedModel, load_model
from ..version import __version__
from .batcher import Admission, Batcher, Busy, shape_key

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
FORMATS = ("json", "raven", "audacity", "csv")


@dataclass
class ServeOptions:
    """Limits and security of the server (each is a flag of ``unetseg serve``)."""

    token: str | None = None
    cors: list[str] = field(default_factory=list)
    max_upload_mb: float = 50.0
    max_pixels: int = 40_000_000
    max_seconds: float = 3600.0
    queue: int = 16
    max_batch: int = 8
    backend: str = "auto"
    threads: int | None = None
    read_timeout: float = 30.0  # seconds a client may take between two pieces of its upload
    variants: int = 4  # engines kept for other tile/flip settings (least recently used dropped)

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_pixels", "max_seconds", "queue", "max_batch", "read_timeout", "variants"):
            if not getattr(self, name) > 0:
                raise UnetsegError(f"--{name.replace('_', '-')} must be positive, not {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise UnetsegError(f"--threads must be at least 1, not {self.threads}")


class ServedModel:
    """One model file, loaded once: an image engine with its batcher, or an audio detector."""

    def __init__(self, name: str, loaded: LoadedModel, options: ServeOptions) -> None:
        from ..inference import Engine, InferenceOptions

        self.name, self.loaded = name, loaded
        self.kind = "audio" if loaded.meta.get("spectrogram") else "image"
        self.inference = InferenceOptions(backend=options.backend, batch_size=options.max_batch,
                                          threads=options.threads)
        self.lock = threading.Lock()
        self.variants: OrderedDict[tuple, Any] = OrderedDict()
        self.keep = options.variants
        if self.kind == "image":
            self.engine = Engine(loaded, self.inference)
            self.batcher = Batcher(self.engine.probabilities, options.max_batch)
        else:
            from ..audio.detect import Detector

            self.detector = Detector(loaded, inference=self.inference)

    def engine_for(self, tile: int | None, tta: bool) -> Any:
        """An engine with other tiles or flips, sharing the chosen backend kind: the last few settings are
        kept, the least recently used dropped (memory stays bounded whatever the requests ask)."""
        from ..inference import Engine

        key = (tile, tta)
        with self.lock:
            if key in self.variants:
                self.variants.move_to_end(key)
            else:
                opts = dataclasses.replace(self.inference, backend=self.engine.backend_name, tile=tile, tta=tta)
                self.variants[key] = Engine(self.loaded, opts)
                while len(self.variants) > self.keep:
                    self.variants.popitem(last=False)
            return self.variants[key]

    def describe(self) -> dict[str, Any]:
        meta = self.loaded.meta
        return {"name": self.name, "kind": self.kind, "classes": meta["classes"], "binary": meta["binary"],
                "colours": meta["colours"], "input": meta["input"], "threshold": meta.get("threshold", 0.5),
                "events": meta.get("events"), "spectrogram": meta.get("spectrogram"),
                "backend": (self.engine if self.kind == "image" else self.detector.engine).backend_name,
                "sha256": self.loaded.digest}

    def close(self) -> None:
        if self.kind == "image":
            self.batcher.close()


class FileStore:
    """Outputs a response links to (denoised audio, spectrograms): fetched once, or gone after ``ttl`` s."""

    def __init__(self, ttl: float = 600.0, limit: int = 64) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="unetseg-serve-"))
        self.ttl, self.limit = ttl, limit
        self.files: dict[str, tuple[Path, str, float]] = {}
        self.lock = threading.Lock()

    def add(self, source: Path, media_type: str) -> str:
        key = secrets.token_urlsafe(16)
        target = self.root / key
        shutil.move(str(source), target)
        with self.lock:
            self._expire()
            self.files[key] = (target, media_type, time.monotonic())
        return f"/files/{key}"

    def take(self, key: str) -> tuple[Path, str] | None:
        with self.lock:
            self._expire()
            entry = self.files.pop(key, None)
        return (entry[0], entry[1]) if entry else None

    def _expire(self) -> None:
        now = time.monotonic()
        old = [k for k, (_, _, t) in self.files.items() if now - t > self.ttl]
        old += sorted(self.files, key=lambda k: self.files[k][2])[: max(0, len(self.files) - self.limit + 1)]
        for k in set(old):
            path, _, _ = self.files.pop(k)
            path.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def load_models(paths: list[str | Path], options: ServeOptions) -> dict[str, ServedModel]:
    """Model files -> served models named by file stem, or by run folder for a run's best/last model
    (``name-2`` when two share a name)."""
    if not paths:
        raise UnetsegError("give at least one --model")
    models: dict[str, ServedModel] = {}
    for path in paths:
        loaded = load_model(path)
        run = loaded.run_dir  # best.safetensors of a run is named after its run folder
        base = run.name if run is not None and Path(path).stem in ("best", "last") else Path(path).stem
        name, n = base, 2
        while name in models:
            name, n = f"{base}-{n}", n + 1
        models[name] = ServedModel(name, loaded, options)
    return models


def _bad(status: int, message: str) -> HTTPException:
    return HTTPException(status, " ".join(str(message).split()))


def create_app(models: dict[str, ServedModel], options: ServeOptions | None = None) -> FastAPI:
    """The FastAPI application serving ``models`` under ``options``."""
    options = options or ServeOptions()
    admission = Admission(options.queue)
    uploading = Admission(4 * options.queue)  # bodies being read: their memory is bounded too
    store = FileStore()
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        for m in models.values():
            m.close()
        store.close()

    app = FastAPI(title="unetseg", version=__version__, lifespan=lifespan,
                  description="Segmentation masks of images and sound events of recordings from unetseg model files.")
    app.state.models, app.state.admission, app.state.store = models, admission, store
    if options.cors:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=options.cors, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    limit = int(options.max_upload_mb * 2**20)
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
        if length and length.isdigit() and int(length) > limit + 65536:
            return JSONResponse({"detail": f"upload of {int(length) / 2**20:.1f} MB is over the limit of "
                                 f"{options.max_upload_mb:g} MB (--max-upload-mb)"}, status_code=413)
        return await call_next(request)

    @app.exception_handler(Busy)
    async def busy(_request: Request, _exc: Busy) -> JSONResponse:
        return JSONResponse({"detail": f"busy: {options.queue} requests are in progress; retry shortly"},
                            status_code=503, headers={"Retry-After": "1"})

    def pick(name: str | None, kind: str) -> ServedModel:
        if name is None:
            chosen = next((m for m in models.values() if m.kind == kind), None)
            if chosen is None:
                raise _bad(400, f"no {kind} model is served; /models lists them")
            return chosen
        if name not in models:
            raise _bad(404, f"no model named {name!r}; served: {', '.join(models)}")
        if models[name].kind != kind:
            other = "/predict" if kind == "audio" else "/detect"
            raise _bad(400, f"model {name!r} is an {models[name].kind} model; send it to {other}")
        return models[name]

    async def upload(request: Request, folder: Path) -> Path:
        """The request's file, read before the request takes a place among those at work."""
        with uploading:
            return await _receive(request, folder)

    async def _receive(request: Request, folder: Path) -> Path:
        body = bytearray()
        pieces = request.stream().__aiter__()
        while True:
            try:
                chunk = await asyncio.wait_for(pieces.__anext__(), options.read_timeout)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                log.info("upload from %s stalled for %g s; dropped", _client(request), options.read_timeout)
                raise _bad(408, f"upload stalled: nothing arrived for {options.read_timeout:g} s") from None
            except ClientDisconnect:
                log.info("client %s went away during its upload", _client(request))
                raise _bad(400, "the client went away during the upload") from None
            body += chunk
            if len(body) > limit + 65536:
                raise _bad(413, f"upload is over the limit of {options.max_upload_mb:g} MB (--max-upload-mb)")
        data = bytes(body)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            request._body = data  # noqa: SLF001 - Starlette parses the form from the body already read
            form = await request.form()
            files = [v for v in form.values() if hasattr(v, "read")]
            if not files:
                raise _bad(400, "multipart upload without a file field")
            data = await files[0].read()
        if len(data) > limit:
            raise _bad(413, f"upload of {len(data) / 2**20:.1f} MB is over the limit of {options.max_upload_mb:g} MB "
                       "(--max-upload-mb)")
        if not data:
            raise _bad(400, "empty upload: send the file as the request body or a multipart file field")
        path = folder / "upload.bin"  # never the client's name
        path.write_bytes(data)
        return path

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness: always public."""
        return {"status": "ok", "version": __version__, "models": len(models), "auth": bool(options.token),
                "in_progress": admission.count, "queue": options.queue}

    @app.get("/models")
    def list_models() -> list[dict[str, Any]]:
        """Each served model's metadata: kind (image or audio), classes, colours, input."""
        return [m.describe() for m in models.values()]

    @app.post("/predict")
    async def predict(request: Request, model: str | None = None,
                      threshold: float | None = Query(None, gt=0, lt=1),
                      open: int = Query(0, ge=0, le=64), close: int = Query(0, ge=0, le=64),
                      min_size: int = Query(0, ge=0), fill_holes: bool = False,
                      tile: int | None = Query(None, ge=16, le=8192), tta: bool = False,
                      format: str = Query("png", pattern="^(png|json)$"), mask: bool = False) -> Response:
        """An image (request body or multipart file) -> its mask PNG, or with ``format=json`` polygons per
        region, per-class pixel areas and COCO RLE (``mask=true`` adds the PNG as base64)."""
        from ..postprocess import PostProcess

        served = pick(model, "image")
        spec = served.loaded.input_spec
        if tile and spec.mode != "pad":
            raise _bad(400, "tile applies to native-size models only; this model scales every image")
        if tile and tile % spec.divisor:
            raise _bad(400, f"tile {tile} is not divisible by the model's stride {spec.divisor}")
        pp = PostProcess(threshold=threshold, open_px=open, close_px=close, min_size=min_size, fill_holes=fill_holes)
        batched = not (tile or tta)
        with tempfile.TemporaryDirectory(prefix="unetseg-upload-") as name:
            path = await upload(request, Path(name))
            with admission:  # a place among the requests at work, once the body is here (503 when none is free)
                if batched:
                    served.batcher.expect(1)
                try:
                    image = await asyncio.to_thread(_read_upload_image, path, spec.channels, options.max_pixels)
                    if batched:
                        engine = served.engine
                        future = served.batcher.submit(shape_key(image, spec), image)
                        batched = False  # announced and submitted
                        probs = await asyncio.wrap_future(future)
                    else:
                        engine = served.engine_for(tile, tta)
                        probs = (await asyncio.to_thread(engine.probabilities, [image]))[0]
                finally:
                    if batched:  # left before submitting (a bad upload)
                        served.batcher.expect(-1)
                return await asyncio.to_thread(_mask_response, engine, probs, pp, served, format, mask)

    @app.post("/detect")
    async def detect(request: Request, model: str | None = None,
                     format: str = Query("json", pattern="^(json|raven|audacity|csv)$"), denoise: bool = False,
                     spectrogram: bool = False) -> Response:
        """A recording (any format ``audio detect`` reads) -> events as JSON, a Raven table, Audacity labels or
        CSV. ``denoise=true`` adds a link to the denoised WAV and ``spectrogram=true`` one to a spectrogram
        PNG (JSON only); each link can be fetched once."""
        served = pick(model, "audio")
        with tempfile.TemporaryDirectory(prefix="unetseg-upload-") as name:
            folder = Path(name)
            path = await upload(request, folder)
            with admission:  # a place among the requests at work, once the body is here (503 when none is free)
                return await _detect_response(served, path, folder, format, denoise, spectrogram)

    async def _detect_response(served: ServedModel, path: Path, folder: Path, format: str, denoise: bool,
                               spectrogram: bool) -> Response:
        from ..audio.annotations import format_audacity, format_csv, format_raven
        from ..audio.io import audio_info

        try:
            info = audio_info(path)
        except UnetsegError as e:
            raise _bad(400, str(e).replace(str(path), "upload")) from None
        if info.duration > options.max_seconds:
            raise _bad(413, f"recording of {info.duration:.0f} s is over the limit of {options.max_seconds:g} s "
                       "(--max-seconds)")
        denoised = folder / "denoised.wav" if denoise else None
        try:
            result = await asyncio.to_thread(_detect, served, path, denoised)
            picture = await asyncio.to_thread(_spectrogram_png, served, path, folder) if spectrogram else None
        except UnetsegError as e:
            raise _bad(400, str(e).replace(str(path), "upload")) from None
        events = result.events
        if format != "json":
            text = {"raven": format_raven, "audacity": format_audacity, "csv": format_csv}[format](events)
            return PlainTextResponse(text, media_type="text/csv" if format == "csv" else "text/plain")
        body: dict[str, Any] = {
            "model": served.name, "duration": round(result.duration, 4), "sample_rate": result.sample_rate,
            "events": [{k: v for k, v in dataclasses.asdict(e).items() if k != "file"} for e in events],
            "raven": format_raven(events)}
        if denoised is not None:
            body["denoised"] = store.add(denoised, "audio/wav")
        if picture is not None:
            png, rows_hz = picture
            body["spectrogram"] = {"url": store.add(png, "image/png"), "seconds": result.duration,
                                   "row_hz": rows_hz}
        return JSONResponse(body)

    @app.get("/files/{key}")
    def fetch(key: str) -> FileResponse:
        """A linked output (denoised audio, spectrogram), once."""
        entry = store.take(key)
        if entry is None:
            raise _bad(404, "no such file (each link can be fetched once)")
        path, media = entry
        return FileResponse(path, media_type=media, background=BackgroundTask(path.unlink, missing_ok=True))

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


def _read_upload_image(path: Path, channels: int, max_pixels: int) -> np.ndarray:
    """The uploaded image, refusing more than ``max_pixels`` from its header before decoding (413)."""
    from ..data.io import ImageTooLarge, read_header, read_image

    try:
        try:
            header = read_header(path)
        except ImageTooLarge:
            raise _bad(413, f"image header declares more pixels than can be decoded safely; the limit is {max_pixels} "
                       "pixels (--max-pixels)") from None
        if header.height * header.width > max_pixels:
            raise _bad(413, f"image of {header.width}x{header.height} pixels is over the limit of {max_pixels} "
                       "pixels (--max-pixels)")
        return read_image(path, channels)
    except UnetsegError as e:
        raise _bad(400, str(e).replace(str(path), "upload")) from None


def _mask_response(engine: Any, probs: Any, pp: Any, served: ServedModel, fmt: str, with_png: bool) -> Response:
    from ..postprocess import threshold_for, to_mask

    classes = to_mask(probs, engine.loaded, pp)
    png = encode_mask(classes, served.loaded.binary, [list(c) for c in served.loaded.colours], compress_level=1)
    if fmt == "png":
        return Response(png, media_type="image/png")
    return JSONResponse(_mask_json(classes, served, threshold_for(engine.loaded, pp), png if with_png else None))


def _detect(served: ServedModel, path: Path, denoised: Path | None) -> Any:
    with served.lock:  # one recording at a time per model: its memory stays bounded
        return served.detector.run(path, denoise=denoised)


def _spectrogram_png(served: ServedModel, path: Path, folder: Path, max_width: int = 2400
                     ) -> tuple[Path, list[float]]:
    """The recording's spectrogram as the model sees it, narrowed to ``max_width`` columns for the page."""
    import cv2

    from ..audio.io import load_audio
    from ..audio.spectrogram import spectrogram_image

    cfg = served.detector.cfg
    y, sr = load_audio(path, cfg.sample_rate)
    image, mapping = spectrogram_image(y, sr, cfg)
    if image.shape[1] > max_width:
        image = cv2.resize(image, (max_width, image.shape[0]), interpolation=cv2.INTER_AREA)
    out = folder / "spectrogram.png"
    Image.fromarray(image).save(out, format="PNG")
    return out, [float(v) for v in mapping.row_hz]


def _mask_json(mask: np.ndarray, served: ServedModel, threshold: float, png: bytes | None) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    from ..postprocess import mask_to_polygons

    loaded = served.loaded
    counts = np.bincount(mask.ravel(), minlength=len(loaded.classes))
    total = int(mask.size)
    rle = {}
    for c, name in enumerate(loaded.classes):
        if c == 0:
            continue
        encoded = mask_utils.encode(np.asfortranarray((mask == c).astype(np.uint8)))
        rle[name] = {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode("ascii")}
    out: dict[str, Any] = {
        "model": served.name, "height": int(mask.shape[0]), "width": int(mask.shape[1]), "threshold": threshold,
        "classes": [{"index": c, "name": name, "colour": list(loaded.colours[c]), "pixels": int(counts[c]),
                     "share": round(int(counts[c]) / total, 6)} for c, name in enumerate(loaded.classes)],
        "regions": mask_to_polygons(mask, loaded.classes, loaded.binary),
        "rle": rle,
    }
    if png is not None:
        out["mask_png"] = base64.b64encode(png).decode("ascii")
    return out


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


