"""``POST /predict``: an image -> its mask (PNG, or JSON with polygons, areas and COCO RLE)."""

from __future__ import annotations

import asyncio
import base64
import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from unetseg.core.config import bounds
from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import encode_mask
from unetseg.prediction.postprocess import PostProcess, mask_to_polygons, threshold_for, to_mask
from unetseg.serve.batcher import shape_key
from unetseg.serve.models import ServedModel
from unetseg.serve.state import ServerState, bad, read_upload_image, shown_name, upload_size

router = APIRouter()


def postprocess_query(threshold: float | None = Query(None, **bounds(PostProcess, "threshold")),
                      open: int = Query(0, **bounds(PostProcess, "open_px")),
                      close: int = Query(0, **bounds(PostProcess, "close_px")),
                      min_size: int = Query(0, **bounds(PostProcess, "min_size")), fill_holes: bool = False
                      ) -> PostProcess:
    """The post-processing query parameters (as ``predict``'s flags) as one ``PostProcess``."""
    try:
        return PostProcess(threshold=threshold, open_px=open, close_px=close, min_size=min_size,
                           fill_holes=fill_holes)
    except UnetsegError as e:
        raise bad(422, str(e)) from None


@dataclass(frozen=True)
class View:
    """How ``/predict`` runs (tiles, flips) and what it answers (a PNG, or JSON with the PNG, the objects)."""

    tile: int | None = None
    tta: bool = False
    format: str = "png"
    mask: bool = False
    objects: bool = False


def view_query(tile: int | None = Query(None, ge=16, le=8192), tta: bool = False,
               format: str = Query("png", pattern="^(png|json)$"), mask: bool = False, objects: bool = False) -> View:
    """``/predict``'s query parameters other than post-processing, as one ``View``."""
    return View(tile, tta, format, mask, objects)


@router.post("/predict")
async def predict(request: Request, pp: Annotated[PostProcess, Depends(postprocess_query)],
                  view: Annotated[View, Depends(view_query)], model: str | None = None,
                  name: str | None = Query(None, max_length=200, description="the file's name, for errors only")
                  ) -> Response:
    """An image (request body or multipart file) -> its mask PNG, or with ``format=json`` polygons per
    region, per-class pixel areas and COCO RLE (``mask=true`` adds the PNG as base64, ``objects=true`` each
    object, a connected region of one class, with its class, score, box and RLE, for review)."""
    server: ServerState = request.app.state.server
    served = server.pick(model, "image")
    spec = served.loaded.input_spec
    if view.tile and spec.mode != "pad":
        raise bad(400, "tile applies to native-size models only; this model scales every image")
    if view.tile and view.tile % spec.divisor:
        raise bad(400, f"tile {view.tile} is not divisible by the model's stride {spec.divisor}")
    with tempfile.TemporaryDirectory(prefix="unetseg-upload-") as tmp:
        path = await server.upload(request, Path(tmp))
        height, width = await asyncio.to_thread(upload_size, path, server.options.max_pixels, shown_name(name))
        # a place among the requests at work, once the body is here, and its share of the memory (503 when none)
        with server.admission, server.memory.take(served.engine.image_bytes(height, width)):
            read = functools.partial(read_upload_image, path, spec.channels, shown_name(name))
            if view.tile or view.tta:  # an engine of its own for these settings, one image at a time
                image = await asyncio.to_thread(read)
                engine = served.engine_for(view.tile, view.tta)
                probs = (await asyncio.to_thread(engine.probabilities, [image], True))[0]
            else:
                engine, probs = served.engine, await _batched(served, read)
            return await asyncio.to_thread(_mask_response, engine, probs, pp, served, view)


async def _batched(served: ServedModel, read: Callable[[], np.ndarray]) -> Any:
    """The probabilities of the image ``read`` gives, run in a batch with the requests that arrive with it: the
    batcher is told of the image before it is read (so that it waits for it), and told again if it never
    comes (a bad upload)."""
    served.batcher.expect(1)
    try:
        image = await asyncio.to_thread(read)
    except BaseException:
        served.batcher.expect(-1)
        raise
    future = served.batcher.submit(shape_key(image, served.loaded.input_spec), image)
    return await asyncio.wrap_future(future)


def _mask_response(engine: Any, probs: Any, pp: PostProcess, served: ServedModel, view: View) -> Response:
    outputs = served.loaded.outputs
    probs, head = probs[:outputs], (probs[outputs:].numpy() if served.loaded.head else None)
    classes = to_mask(probs, engine.loaded, pp)
    png = encode_mask(classes, served.loaded.binary, [list(c) for c in served.loaded.colours], compress_level=1)
    if view.format == "png":
        return Response(png, media_type="image/png")
    out = _mask_json(classes, served, threshold_for(engine.loaded, pp), png if view.mask else None)
    if view.objects:
        out["objects"] = _objects(classes, np.asarray(probs), head, served)
        out["objects_from"] = "instances" if head is not None else "components"
    return JSONResponse(out)


MAX_OBJECTS = 1000


def _objects(mask: np.ndarray, probs: np.ndarray, head: np.ndarray | None, served: ServedModel
             ) -> list[dict[str, Any]]:
    """The image's objects (the instance head's, else each connected region of one class; the largest first,
    at most ``MAX_OBJECTS``), each with its class, score, box [x, y, w, h] and COCO RLE."""
    from pycocotools import mask as mask_utils

    from unetseg.data.coco import objects_to_coco_results
    from unetseg.instances.centres import image_objects

    names = served.loaded.classes
    found = objects_to_coco_results(*image_objects(mask, probs, head), 0, {c: c for c in range(1, len(names))})
    found = sorted(found, key=lambda r: -r["area"])[:MAX_OBJECTS]
    return [{"id": i, "class": r["category_id"], "label": names[r["category_id"]], "score": r["score"],
             "area": r["area"], "box": [round(float(v), 1) for v in mask_utils.toBbox(
                 {"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"].encode("ascii")})],
             "rle": r["segmentation"]} for i, r in enumerate(found, 1)]


def _mask_json(mask: np.ndarray, served: ServedModel, threshold: float, png: bytes | None) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

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
