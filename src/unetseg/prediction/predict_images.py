"""``unetseg predict``: image files in, mask files (and extras) out, on the inference engine."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unetseg.core.distributed import Group
from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import (
    atomic_write,
    check_output_dir,
    input_folders,
    list_inputs,
    write_json,
    write_mask,
    write_png,
)
from unetseg.core.output_folder import Plan, finish, output_mode, shared_run
from unetseg.data.images import IMAGE_EXTENSIONS, read_image
from unetseg.evaluation.figures import overlay, to_uint8_rgb
from unetseg.inference import Engine, ImageDataset, InferenceOptions
from unetseg.instances.centres import image_objects
from unetseg.models.modelfile import LoadedModel, load_model
from unetseg.prediction.postprocess import PostProcess, mask_to_polygons, to_mask

# Options that change speed, not the masks: a run may resume with other values.
SPEED_ONLY = ("device", "threads", "batch_size", "workers")


@dataclass
class PredictResult:
    output: Path
    masks: list[Path]
    backend: str
    predicted: int  # images predicted in this call (the rest were done before a --resume)


@dataclass(frozen=True)
class PredictOutputs:
    """What ``predict`` writes beside the masks, and how it treats an earlier run in the folder.

    ``overlays/<stem>.png``, ``probabilities/<stem>.png`` (binary, 0-255) or ``.npy`` (float16 C x H x W),
    ``contours/<stem>.json``, ``instances/<stem>.png`` (16-bit instance IDs: 0 none, 1..N one object each;
    the connected components of each class for models without an instance head), and ``coco_results``: one
    COCO results file (an RLE per object of ``instances``) whose image and category ids come from ``coco_json``
    when given (matched by file name and class name), else from the input order and class index (each
    image's part in ``coco/<stem>.json``). Existing files are an error unless ``overwrite``; ``resume``
    finishes a folder an interrupted run with the same model and options left (see ``outputs.OutputRun``).
    """

    overlays: bool = False
    probabilities: bool = False
    contours: bool = False
    instances: bool = False
    coco_results: str | Path | None = None
    coco_json: str | Path | None = None
    overwrite: bool = False
    resume: bool = False


def predict(model: str | Path | LoadedModel, inputs: str | Path | list, output: str | Path, *,
            options: InferenceOptions | None = None, postprocess: PostProcess | None = None,
            outputs: PredictOutputs | None = None, engine: Engine | None = None,
            group: Group | None = None) -> PredictResult:
    """Write a mask PNG per input image (at its original size) and the ``outputs`` asked for into ``output``.

    Masks: binary 0/255, multi-class an indexed PNG whose value is the class and whose palette draws it.
    ``inference.json`` records the options, post-processing, backend and model used. ``engine``: one
    already loaded (reused across calls). ``group``: the processes sharing the inputs
    (``distributed.launched_group``); each writes its own share, rank 0 checks the folder first and merges
    the COCO results last.
    """
    o = outputs or PredictOutputs()
    overlays, probabilities, contours, coco_results, coco_json = (o.overlays, o.probabilities, o.contours,
                                                                   o.coco_results, o.coco_json)
    mode = output_mode(o.overwrite, o.resume)
    out = check_output_dir(output)
    loaded = engine.loaded if engine else model if isinstance(model, LoadedModel) else load_model(model)
    inputs_given = inputs
    files = list_inputs(inputs, IMAGE_EXTENSIONS, "images")
    stems: dict[str, Path] = {}
    for f in files:
        if f.stem in stems:
            raise UnetsegError(f"{f}: same name as {stems[f.stem]}; their outputs would collide")
        stems[f.stem] = f
    inputs = [*files, *([loaded.path] if loaded.path else []), *([Path(coco_json)] if coco_json else [])]
    if coco_results:
        check_output_dir(Path(coco_results).parent)
    extras = {"overlays": overlays, "probabilities": probabilities, "contours": contours,
              "instances": o.instances, "coco": bool(coco_results)}
    targets = {f.stem: _targets(out, f.stem, loaded.binary, **extras) for f in files}
    plan = Plan(targets, inputs, input_folders(inputs_given, files), [Path(coco_results)] if coco_results else [])
    image_ids, category_ids = _coco_ids(files, loaded.classes, coco_json)
    pp = postprocess or PostProcess()
    opts = engine.options if engine else options or InferenceOptions()
    if loaded.input_spec.mode != "pad" and opts.tile:
        size = loaded.input_spec.size or (0, 0)
        raise UnetsegError(f"--tile {opts.tile}: this model scales every image to {size[1]}x{size[0]} "
                           f"({loaded.input_spec.mode}); tiles apply to native-size (pad) models only")
    key = {"model_sha256": loaded.digest, "postprocess": vars(pp), "outputs": extras,
           "options": {k: v for k, v in opts.to_dict().items() if k not in SPEED_ONLY},
           "coco_json": str(coco_json) if coco_json else None}
    group = group or Group()
    engine = engine or Engine(loaded, opts)
    engine.check_sizes(files, 6.0 * overlays + 2.0 * probabilities)  # measured: +5 B/px with both
    with shared_run(group, out, key, plan, mode, engine.describe()) as done:
        todo = group.shard([stems[s] for s in sorted(stems) if s not in done])
        palette = [list(c) for c in loaded.colours]
        for item, probs in engine.run(ImageDataset(todo, loaded.input_spec)):
            src = todo[item["index"]]
            mask = to_mask(probs, engine.loaded, pp)
            if coco_results or o.instances:  # the head's instances, else each class's components
                head = item["head"].numpy() if "head" in item and pp.objects == "auto" else None
                objects = image_objects(mask, probs.numpy(), head, pp.peak_threshold)
            if coco_results:  # first, so that a mask file present means every output of the image is
                from unetseg.data.coco import objects_to_coco_results

                write_json(out / "coco" / f"{src.stem}.json",
                           objects_to_coco_results(*objects, image_ids[src.name], category_ids), indent=None)
            if overlays:
                image = to_uint8_rgb(read_image(src))
                write_png(out / "overlays" / f"{src.stem}.png", overlay(image, mask, loaded.colours, loaded.binary))
            if probabilities:
                _write_probabilities(out / "probabilities", src.stem, probs, loaded.binary)
            if o.instances:
                write_png(out / "instances" / f"{src.stem}.png", objects[0])
            if contours:
                write_json(out / "contours" / f"{src.stem}.json", {
                    "image": str(src), "height": mask.shape[0], "width": mask.shape[1],
                    "objects": mask_to_polygons(mask, loaded.classes, loaded.binary)}, indent=None)
            write_mask(out / f"{src.stem}.png", mask, loaded.binary, palette)
        predicted = sum(group.gather(len(todo)))  # every process is done
        if group.main:
            if coco_results:
                results = [r for f in files for r in json.loads((out / "coco" / f"{f.stem}.json").read_text())]
                write_json(coco_results, results, indent=None)
            finish(out, plan, engine.describe(), key, len(done), inputs=len(files), processes=group.world,
                   postprocess=vars(pp))
    return PredictResult(out, [out / f"{f.stem}.png" for f in files], engine.backend_name, predicted)


def _coco_ids(files: list[Path], classes: list[str], coco_json: str | Path | None
              ) -> tuple[dict[str, int], dict[int, int]]:
    """Image ids by file name and category ids by class index (background left out)."""
    if coco_json is None:
        return {f.name: i for i, f in enumerate(files)}, {c: c for c in range(1, len(classes))}
    from unetseg.data.coco import read_coco_json
    from unetseg.data.schema import CocoResultsIds

    data = read_coco_json(Path(coco_json), CocoResultsIds)
    by_file = {Path(img["file_name"]).name: int(img["id"]) for img in data.get("images", [])}
    missing = [f.name for f in files if f.name not in by_file]
    if missing:
        raise UnetsegError(f"{coco_json}: no image entry for {missing[0]} ({len(missing)} inputs unlisted)")
    by_name: dict[str, int] = {}
    for cat in data.get("categories", []):  # the last category of a name wins (Roboflow repeats a placeholder)
        by_name[cat["name"]] = int(cat["id"])
    return by_file, {c: by_name[name] for c, name in enumerate(classes) if c > 0 and name in by_name}


def _write_probabilities(folder: Path, stem: str, probs: torch.Tensor, binary: bool) -> None:
    if binary:
        write_png(folder / f"{stem}.png", (probs[0].numpy() * 255 + 0.5).astype(np.uint8))
    else:
        atomic_write(folder / f"{stem}.npy", lambda p: np.save(p, probs.numpy().astype(np.float16)))


def _targets(out: Path, stem: str, binary: bool, overlays: bool, probabilities: bool, contours: bool,
             instances: bool, coco: bool) -> list[Path]:
    """The files one image produces; its mask last (written last)."""
    paths = []
    if coco:
        paths.append(out / "coco" / f"{stem}.json")
    if overlays:
        paths.append(out / "overlays" / f"{stem}.png")
    if probabilities:
        paths.append(out / "probabilities" / f"{stem}{'.png' if binary else '.npy'}")
    if contours:
        paths.append(out / "contours" / f"{stem}.json")
    if instances:
        paths.append(out / "instances" / f"{stem}.png")
    return [*paths, out / f"{stem}.png"]
