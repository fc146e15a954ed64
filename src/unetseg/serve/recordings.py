"""``serve --recordings DIR``: the recordings of a folder on the server, listed and opened for review without
an upload (a long recording need not cross the network). A recording is reached by its path relative to the
folder, checked as a review's name is: no ``..``, no absolute path, no link out of the folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from unetseg.core.errors import UnetsegError
from unetseg.serve.review import review_response
from unetseg.serve.state import ServerState, bad

router = APIRouter(tags=["review"])
AUDIO = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")
MAX_LISTED = 10_000


def _root(request: Request) -> Path:
    server: ServerState = request.app.state.server
    if not server.options.recordings:
        raise bad(404, "no recordings folder is served (start the server with --recordings DIR)")
    return Path(server.options.recordings).resolve()


def recording_in(root: Path, relative: str) -> Path:
    """``relative`` as a recording inside ``root``, or a one-line error."""
    given = Path(relative)
    if given.is_absolute():
        raise UnetsegError(f"recording {given.name[:80]!r}: give its path inside the recordings folder, not an "
                           "absolute path")
    if ".." in given.parts or "\0" in relative or not given.parts:
        raise UnetsegError(f"recording {relative[:80]!r}: give a path inside the recordings folder")
    path = (root / given).resolve()
    if root not in path.parents or not path.is_file() or path.suffix.lower() not in AUDIO:
        raise UnetsegError(f"recording {relative[:80]!r}: no such recording in the recordings folder")
    return path


@router.get("/recordings")
def list_recordings(request: Request) -> list[dict[str, Any]]:
    """The recordings of the served folder (and its subfolders): path relative to it, and size in bytes."""
    root = _root(request)
    out = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in AUDIO and path.is_file() and root in path.resolve().parents:
            out.append({"path": path.relative_to(root).as_posix(), "bytes": path.stat().st_size})
            if len(out) >= MAX_LISTED:
                break
    return out


@router.post("/recordings/review")
async def review_recording(request: Request, path: str = Query(..., max_length=1000), model: str | None = None,
                           detect: bool = True) -> JSONResponse:
    """Open a served recording for review: its review when one exists (the same bytes), else a new one, with
    the model's events (``detect=false``: none, to annotate from scratch)."""
    server: ServerState = request.app.state.server
    try:
        recording = recording_in(_root(request), path)
    except UnetsegError as e:
        raise bad(400, str(e)) from None
    served = server.pick(model, "audio") if detect else None
    return await review_response(request, recording, recording.name, served, None, move=False)
