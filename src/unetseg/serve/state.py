"""The server's state shared by its routes: the models, the places among requests at work, the linked files,
and the reading of uploads (before a request takes a place: a slow upload holds none)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import numpy as np
from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

from unetseg.core.budget import memory_budget
from unetseg.core.errors import UnetsegError
from unetseg.serve.batcher import Admission, Budget
from unetseg.serve.models import FileStore, ServedModel, ServeOptions

log = logging.getLogger(__name__)
MAX_FORM = 256 * 2**20  # bytes of a multipart upload, parsed in memory


def bad(status: int, message: str) -> HTTPException:
    """An HTTP error of one line."""
    return HTTPException(status, " ".join(str(message).split()))


class ServerState:
    """What every route of one app shares (``request.app.state.server``)."""

    def __init__(self, models: dict[str, ServedModel], options: ServeOptions) -> None:
        self.models, self.options = models, options
        self.admission = Admission(options.queue)  # requests at work (503 when none is free)
        self.uploading = Admission(4 * options.queue)  # bodies being read: their memory is bounded too
        self.memory = Budget(memory_budget())  # what the requests at work may take together
        self.store = FileStore()
        self.limit = int(options.max_upload_mb * 2**20)

    def pick(self, name: str | None, kind: str) -> ServedModel:
        """The model named ``name`` (else the first of ``kind``), refusing one of the other kind."""
        models = self.models
        if name is None:
            chosen = next((m for m in models.values() if m.kind == kind), None)
            if chosen is None:
                raise bad(400, f"no {kind} model is served; /models lists them")
            return chosen
        if name not in models:
            raise bad(404, f"no model named {name!r}; served: {', '.join(models)}")
        if models[name].kind != kind:
            other = "/predict" if kind == "audio" else "/detect"
            raise bad(400, f"model {name!r} is an {models[name].kind} model; send it to {other}")
        return models[name]

    async def upload(self, request: Request, folder: Path) -> Path:
        """The request's file, read before the request takes a place among those at work."""
        with self.uploading:
            return await self._receive(request, folder)

    async def _receive(self, request: Request, folder: Path) -> Path:
        """The body written to ``folder/upload.bin`` as it arrives (a long recording never sits in memory);
        a multipart form (at most ``MAX_FORM`` bytes) is parsed after."""
        options, limit = self.options, self.limit
        path = folder / "upload.bin"  # never the client's name
        size = 0
        pieces = request.stream().__aiter__()
        with open(path, "wb") as out:
            while True:
                try:
                    chunk = await asyncio.wait_for(pieces.__anext__(), options.read_timeout)
                except StopAsyncIteration:
                    break
                except asyncio.TimeoutError:
                    log.info("upload from %s stalled for %g s; dropped", client(request), options.read_timeout)
                    raise bad(408, f"upload stalled: nothing arrived for {options.read_timeout:g} s") from None
                except ClientDisconnect:
                    log.info("client %s went away during its upload", client(request))
                    raise bad(400, "the client went away during the upload") from None
                size += len(chunk)
                if size > limit + 65536:
                    raise bad(413, f"upload is over the limit of {options.max_upload_mb:g} MB (--max-upload-mb)")
                out.write(chunk)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            if size > MAX_FORM:
                raise bad(413, f"a multipart upload of {size / 2**20:.0f} MB is over {MAX_FORM // 2**20} MB; send a "
                          "large file as the request body")
            request._body = path.read_bytes()  # noqa: SLF001 - Starlette parses the form from the body already read
            form = await request.form()
            files = [v for v in form.values() if hasattr(v, "read")]
            if not files:
                raise bad(400, "multipart upload without a file field")
            data = await files[0].read()
            path.write_bytes(data)
            size = len(data)
        if size > limit:
            raise bad(413, f"upload of {size / 2**20:.1f} MB is over the limit of {options.max_upload_mb:g} MB "
                      "(--max-upload-mb)")
        if not size:
            raise bad(400, "empty upload: send the file as the request body or a multipart file field")
        return path

    def close(self) -> None:
        for m in self.models.values():
            m.close()
        self.store.close()


def client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


def shown_name(name: str | None) -> str:
    """How errors name an upload: the client's file name when it gave one (``?name=``), never a server path."""
    return " ".join(Path(name).name.split())[:200] if name else "upload"


def upload_size(path: Path, max_pixels: int, shown: str = "upload") -> tuple[int, int]:
    """The uploaded image's height and width from its header, refusing more than ``max_pixels`` before
    anything is decoded (413); errors name it ``shown``."""
    from unetseg.data.images import ImageTooLarge, read_header

    try:
        try:
            header = read_header(path)
        except ImageTooLarge:
            raise bad(413, f"image header declares more pixels than can be decoded safely; the limit is {max_pixels} "
                       "pixels (--max-pixels)") from None
    except UnetsegError as e:
        raise bad(400, str(e).replace(str(path), shown)) from None
    if header.height * header.width > max_pixels:
        raise bad(413, f"image of {header.width}x{header.height} pixels is over the limit of {max_pixels} "
                   "pixels (--max-pixels)")
    return header.height, header.width


def read_upload_image(path: Path, channels: int, shown: str = "upload") -> np.ndarray:
    """The uploaded image (its size checked by ``upload_size`` first); errors name it ``shown``."""
    from unetseg.data.images import read_image

    try:
        return read_image(path, channels)
    except UnetsegError as e:
        raise bad(400, str(e).replace(str(path), shown)) from None
