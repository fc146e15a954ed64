"""Edits of a whole review: undo and redo (kept in ``review.json``, so they survive a reload), the page's
score threshold, reference layers and starting events from a person's table, and deleting a review (moved
to ``<reviews>/.deleted/``, never erased)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from unetseg.audio.annotations import read_annotations
from unetseg.core.errors import UnetsegError
from unetseg.serve.review import document, hide_paths, open_review, review_store
from unetseg.serve.state import ServerState, bad, shown_name

router = APIRouter(prefix="/reviews", tags=["review"])
TABLE_SUFFIXES = (".txt", ".csv", ".tsv")


class ReviewSettings(BaseModel):
    """What the page keeps with a review."""

    model_config = ConfigDict(extra="forbid", strict=True)
    min_score: float = Field(..., ge=0.0, le=1.0, description="events scored below are hidden in the page")


def _edit(request: Request, name: str, action: Any) -> JSONResponse:
    store = review_store(request)
    with store.lock(name):
        review = open_review(request, name)
        try:
            action(review)
        except UnetsegError as e:
            raise bad(409 if str(e).startswith("nothing to") else 400, hide_paths(request, e)) from None
    return JSONResponse(document(review))


@router.post("/{name}/undo")
def undo(request: Request, name: str) -> JSONResponse:
    """Take back the review's last edit (any kind: move, label, state, addition, a batch of found events);
    answers the whole review. 409 when there is nothing to undo."""
    return _edit(request, name, lambda r: r.undo())


@router.post("/{name}/redo")
def redo(request: Request, name: str) -> JSONResponse:
    """Make the last undone edit again; 409 when there is none."""
    return _edit(request, name, lambda r: r.redo())


@router.patch("/{name}")
def settings(request: Request, name: str, body: ReviewSettings) -> JSONResponse:
    """Keep the page's score threshold with the review."""
    return _edit(request, name, lambda r: r.set_view(body.min_score))


@router.delete("/{name}")
def delete_review(request: Request, name: str) -> dict[str, Any]:
    """Take a review out of the list: its folder moves to ``<reviews>/.deleted/`` (restored by moving it back)."""
    try:
        moved = review_store(request).delete(name)
    except KeyError:
        raise bad(404, f"no review named {name!r}; GET /reviews lists them") from None
    except (UnetsegError, OSError) as e:
        raise bad(400, f"review {name!r}: {hide_paths(request, e)}") from None
    return {"deleted": name, "moved_to": moved}


@router.post("/{name}/layers")
async def add_table(request: Request, name: str, table: str = Query(..., max_length=200,
                                                                    description="the table's file name"),
                    use: Literal["reference", "events"] = Query("reference", alias="as")) -> JSONResponse:
    """A Raven selection table, Audacity labels or an onset/offset CSV (the body) for this recording: drawn
    as a reference layer (``as=reference``, never edited or trained on), or added as unreviewed events
    (``as=events``: a review started from another person's table; undone as one edit)."""
    server: ServerState = request.app.state.server
    shown = shown_name(table)
    suffix = Path(shown).suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise bad(400, f"{shown}: not a table (Raven .txt, Audacity .txt, or .csv)")
    with tempfile.TemporaryDirectory(prefix="unetseg-table-") as tmp:
        path = await server.upload(request, Path(tmp))
        named = path.with_name(f"table{suffix}")
        path.replace(named)
        try:
            events = read_annotations(named)
        except UnetsegError as e:
            raise bad(400, str(e).replace(str(named), shown)) from None
    if not events:
        raise bad(400, f"{shown}: the table has no rows")

    def apply(review: Any) -> None:
        try:
            if use == "reference":
                review.add_layer(shown, events)
            else:
                review.add_many([{"begin": e.begin, "end": min(e.end, review.duration), "low": e.low,
                                  "high": e.high, "label": e.label, "score": e.score} for e in events])
        except UnetsegError as e:
            raise UnetsegError(str(e).replace(str(named), shown)) from None

    return _edit(request, name, apply)
