"""``unetseg predict``: image files in, mask files (and extras) out, on the inference engine."""

from __future__ import annotations

import json
from collections.abc import Callable
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
from unetseg.core.guard import check_outputs
from unetseg.core.output_folder import Plan, finish, output_mode, shared_run
from unetseg.core.threads import Behind
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

    def kinds(self) -> dict[str, bool]:
        """Which of the extra outputs (``KINDS``) are asked for, by name."""
        return {"coco": bool(self.coco_results), "overlays": self.overlays, "probabilities": self.probabilities,
                "contours": self.contours, "instances": self.instances}


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
    coco_results, coco_json = o.coco_results, o.coco_json
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
    extras = o.kinds()
    kinds = [k for k in KINDS if extras[k.name]]
    targets = {f.stem: [*(k.path(out, f.stem, loaded.binary) for k in kinds), out / f"{f.stem}.png"] for f in files}
    plan = Plan(targets, inputs, input_folders(inputs_given, files), [Path(coco_results)] if coco_results else [])
    check_outputs(plan.extra, plan.inputs, overwrite=True)  # a COCO results file that is an input: before reading
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
    most = engine.check_sizes(files, 6.0 * o.overlays + 2.0 * o.probabilities)  # measured: +5 B/px with both
    # images are read ahead of the model and written behind it (up to two batches each way) where those
    # batches take at most half the memory budget; larger ones go one batch at a time
    ahead = 4 * engine.options.batch_size * most <= engine.guard.budget // 2
    with shared_run(group, out, key, plan, mode, engine.describe()) as done:
        todo = group.shard([stems[s] for s in sorted(stems) if s not in done])
        palette = [list(c) for c in loaded.colours]

        def write(result: tuple[dict, torch.Tensor]) -> None:
            item, probs = result
            src = todo[item["index"]]
            mask = to_mask(probs, engine.loaded, pp)
            objects = None
            if coco_results or o.instances:  # the head's instances, else each class's components
                head = item["head"].numpy() if "head" in item and pp.objects == "auto" else None
                objects = image_objects(mask, probs.numpy(), head, pp.peak_threshold)
            made = _Made(src, mask, probs, objects, loaded, (image_ids[src.name], category_ids))
            for kind in kinds:  # the COCO part first, the mask last: a mask file means every output is there
                kind.write(kind.path(out, src.stem, loaded.binary), made)
            write_mask(out / f"{src.stem}.png", mask, loaded.binary, palette)

        writer = Behind(write) if ahead else None
        try:
            for result in engine.run(ImageDataset(todo, loaded.input_spec), read_ahead=ahead):
                (writer.put if writer else write)(result)
        finally:
            if writer is not None:
                writer.close()  # the images given are written (an interrupted run resumes after them)
        if writer is not None:
            writer.finish()  # an error writing is raised here
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


@dataclass(frozen=True)
class _Made:
    """What one image's outputs are made of."""

    src: Path
    mask: np.ndarray
    probs: torch.Tensor
    objects: tuple | None  # instance IDs and their classes and scores (``image_objects``)
    loaded: LoadedModel
    coco_ids: tuple[int, dict[int, int]]  # the image's id and the category id of each class


def _coco(path: Path, m: _Made) -> None:
    from unetseg.data.coco import objects_to_coco_results

    write_json(path, objects_to_coco_results(*m.objects, *m.coco_ids), indent=None)


def _overlay(path: Path, m: _Made) -> None:
    write_png(path, overlay(to_uint8_rgb(read_image(m.src)), m.mask, m.loaded.colours, m.loaded.binary))


def _probabilities(path: Path, m: _Made) -> None:
    if m.loaded.binary:
        write_png(path, (m.probs[0].numpy() * 255 + 0.5).astype(np.uint8))
    else:
        atomic_write(path, lambda p: np.save(p, m.probs.numpy().astype(np.float16)))


def _contours(path: Path, m: _Made) -> None:
    write_json(path, {"image": str(m.src), "height": m.mask.shape[0], "width": m.mask.shape[1],
                      "objects": mask_to_polygons(m.mask, m.loaded.classes, m.loaded.binary)}, indent=None)


def _instances(path: Path, m: _Made) -> None:
    write_png(path, m.objects[0])


@dataclass(frozen=True)
class Kind:
    """One kind of extra output: its folder, its file suffix (by binary or multi-class model) and its writer."""

    name: str
    suffix: tuple[str, str]  # binary, multi-class
    write: Callable[[Path, _Made], None]

    def path(self, out: Path, stem: str, binary: bool) -> Path:
        return out / self.name / f"{stem}{self.suffix[0 if binary else 1]}"


# The extra outputs in the order they are written (``PredictOutputs.kinds`` names which are asked for).
KINDS = (Kind("coco", (".json", ".json"), _coco), Kind("overlays", (".png", ".png"), _overlay),
         Kind("probabilities", (".png", ".npy"), _probabilities), Kind("contours", (".json", ".json"), _contours),
         Kind("instances", (".png", ".png"), _instances))
