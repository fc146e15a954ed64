"""Evaluation of a model file on a dataset split, at each image's original size.

Writes ``metrics.json``, ``per_image.csv`` (IoU, Dice and pixel accuracy per image) and, per image, a
figure: original, true mask, prediction, and the prediction over the image with its IoU.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import check_output_dir, new_run_dir, write_json, write_text
from unetseg.core.guard import check_output_folder, check_outputs, folder_lock
from unetseg.core.output_folder import recorded_outputs, relative_outputs
from unetseg.data.coco import coco_truth, objects_to_coco_results
from unetseg.data.discover import DatasetInfo, load_dataset
from unetseg.data.images import IGNORE, read_image, read_instance_ids
from unetseg.evaluation.figures import colourize, overlay, panel, plot_evaluation, save_rgb, to_uint8_rgb
from unetseg.evaluation.pixel_scores import confusion_matrices, counts_from_matrices, image_iou, image_score, summarize
from unetseg.inference import Engine, ImageDataset, InferenceOptions
from unetseg.instances.centres import coco_average_precision, image_objects
from unetseg.models.modelfile import LoadedModel, load_model
from unetseg.prediction.postprocess import PostProcess, to_mask


@dataclass
class EvalResult:
    output: Path
    metrics: dict[str, Any]
    per_image: list[dict[str, Any]]
    counts: list[np.ndarray]  # per image, (classes, 4): tp, fp, tn, fn - to regroup scores (e.g. by SNR)


def evaluate(model: str | Path | LoadedModel, data: str | Path | None = None, split: str = "test",
             output: str | Path | None = None, *, options: InferenceOptions | None = None,
             postprocess: PostProcess | None = None, figures: int | None = None, overwrite: bool = False) -> EvalResult:
    """Score ``model`` on one split of ``data``; ``figures`` limits the per-image figures (None: all).

    A model of a run folder is scored on the exact files its run recorded (``dataset.json``) when ``data``
    is None or that run's dataset; any other dataset is read as given (its own splits, or held-out splits
    derived with the default seed and fractions). Without ``output``, a new ``runs/eval-<dataset>-<split>``
    is made; an ``output`` folder holding an earlier evaluation is refused unless ``overwrite``. Everything
    is checked before the folder is made.
    """
    if output:
        check_output_dir(output)
    loaded = model if isinstance(model, LoadedModel) else load_model(model)
    info = _dataset(loaded, data)
    if info.num_classes != len(loaded.classes) or info.binary != loaded.binary:
        raise UnetsegError(f"{info.source}: dataset has {info.num_classes} classes but the model predicts "
                           f"{len(loaded.classes)} ({', '.join(loaded.classes)})")
    pairs = info.split(split)
    pp = postprocess or PostProcess()
    engine = Engine(loaded, options)  # device and backend checked before a folder is made
    engine.check_sizes([p.image for p in pairs], 16.0)  # the truth mask and the figure
    if output:
        out = Path(output)
        inputs = [*([loaded.path] if loaded.path else []), *(p.image for p in pairs), *(p.mask for p in pairs)]
        dirs = sorted({f.parent for f in inputs[1 if loaded.path else 0:]})  # the split's image and mask folders
        check_output_folder(out, dirs)
        check_outputs(_outputs(out, pairs), inputs, overwrite, input_dirs=dirs, owned=recorded_outputs(out))
    else:
        out = new_run_dir("runs", f"eval-{info.name}-{split}")
    with folder_lock(out):
        return _evaluate(loaded, engine, info, pairs, split, out, pp, figures)


def _outputs(out: Path, pairs: list) -> list[Path]:
    return [out / name for name in OUTPUTS] + [out / "figures" / f"{p.image.stem}.png" for p in pairs]


def _dataset(loaded: LoadedModel, data: str | Path | None) -> DatasetInfo:
    """The run's recorded dataset (its exact split files) when ``data`` is None or names it, else ``data``."""
    run = loaded.run_dir
    record = json.loads((run / "dataset.json").read_text()) if run is not None else None
    if data is None:
        if record is None:
            raise UnetsegError(f"{loaded.path}: not in a run folder with its dataset.json; give the dataset (--data)")
        return DatasetInfo.from_record(record)
    if record is not None and Path(data).resolve() == Path(record["source"]).resolve():
        return DatasetInfo.from_record(record)
    return load_dataset(data, need_train=False)


OUTPUTS = ("metrics.json", "inference.json", "per_image.csv", "confusion_matrix.png", "class_iou.png")


def _evaluate(loaded: LoadedModel, engine: Engine, info: DatasetInfo, pairs: list, split: str, out: Path,
              pp: PostProcess, figures: int | None) -> EvalResult:
    dataset = ImageDataset([p.image for p in pairs], loaded.input_spec, [p.mask for p in pairs], info.decoder)
    instances = _InstanceScores(info, pairs)
    total = np.zeros((info.num_classes, 4), np.int64)
    matrix = np.zeros((info.num_classes, info.num_classes), np.int64)
    rows, per_image_counts = [], []
    for item, probs in engine.run(dataset):
        pair = pairs[item["index"]]
        truth = item["mask"]
        pred = to_mask(probs, engine.loaded, pp)
        head = item["head"].numpy() if "head" in item and pp.objects == "auto" else None
        instances.add(pair, truth, pred, probs.numpy(), head, pp.peak_threshold)
        image_matrix = confusion_matrices(torch.from_numpy(pred)[None], torch.from_numpy(truth)[None],
                                          info.num_classes)
        counts = counts_from_matrices(image_matrix)[0].numpy()
        total += counts
        matrix += image_matrix[0].numpy()
        per_image_counts.append(counts)
        iou = image_iou(counts, loaded.binary)
        dice = image_score(counts, loaded.binary, "dice", empty=float("nan"))
        valid = counts[:, 0].sum() + counts[:, 3].sum()
        rows.append({"image": str(pair.image), "mask": str(pair.mask), "iou": round(iou, 6),
                     "dice": "" if np.isnan(dice) else round(dice, 6),
                     "pixel_accuracy": round(float(counts[:, 0].sum() / valid), 6) if valid else ""})
        if figures is None or len(rows) <= figures:
            image = to_uint8_rgb(read_image(pair.image))
            colours = loaded.colours
            fig = panel([image, colourize(truth, colours), colourize(pred, colours),
                         overlay(image, pred, colours, loaded.binary)],
                        ["image", "truth", "prediction", f"overlay  IoU {iou:.3f}"])
            save_rgb(out / "figures" / f"{pair.image.stem}.png", fig)
    metrics = summarize(total, info.classes, loaded.binary)
    metrics = {"split": split, "images": len(rows), "dataset": str(info.source), **metrics,
               "counts": {c: dict(zip(("tp", "fp", "tn", "fn"), map(int, total[i]), strict=True))
                          for i, c in enumerate(info.classes)}}
    metrics["confusion_matrix"] = {"rows": "true class", "columns": "predicted class", "pixels": matrix.tolist()}
    if instances.truth is not None:
        metrics["instances"] = instances.scores()
    write_json(out / "metrics.json", metrics)
    plot_evaluation(matrix, metrics["per_class"], out / "confusion_matrix.png", out / "class_iou.png")
    write_json(out / "inference.json", {**engine.describe(), "postprocess": vars(pp),
                                        "outputs": relative_outputs(out, _outputs(out, pairs)[1:])})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out / "per_image.csv", buf.getvalue())
    return EvalResult(out, metrics, rows, per_image_counts)


class _InstanceScores:
    """COCO AP of the predicted objects against the dataset's instances: a COCO dataset's, or the instance-ID
    PNGs of a dataset that has them (each ID an object of its pixels' most frequent true class); datasets
    without instances are not scored. The objects are the instance head's (one per heatmap peak, scored by
    it) or, without a head, the connected components of each class, scored by their mean probability."""

    def __init__(self, info: DatasetInfo, pairs: list) -> None:
        self.truth: dict[str, Any] | None = None
        self.results: list[dict[str, Any]] = []
        self.head = False  # whether the objects came from an instance head
        self.classes = {c: c for c in range(1, info.num_classes)}
        self.from_ids = False
        if info.coco:
            self.truth, self.ids = coco_truth(info.coco["jsons"], info.coco["groups"], [p.image.name for p in pairs])
        elif info.instances:
            self.from_ids = True
            self.ids = {p.image.name: i + 1 for i, p in enumerate(pairs)}
            self.truth = {"images": [], "annotations": [],
                          "categories": [{"id": c, "name": n} for c, n in enumerate(info.classes) if c > 0]}

    def add(self, pair: Any, truth: np.ndarray, mask: np.ndarray, probs: np.ndarray, head: np.ndarray | None,
            peak_threshold: float) -> None:
        name = pair.image.name
        if self.truth is None or name not in self.ids:
            return
        if self.from_ids:
            self._add_truth(pair, truth)
        self.head = head is not None
        objects = image_objects(mask, probs, head, peak_threshold)
        self.results += objects_to_coco_results(*objects, self.ids[name], self.classes)

    def _add_truth(self, pair: Any, truth: np.ndarray) -> None:
        """The objects of an instance-ID PNG as COCO annotations (labels from the true class mask)."""
        from pycocotools import mask as mask_utils

        assert self.truth is not None
        ids = read_instance_ids(pair.instances)
        image_id = self.ids[pair.image.name]
        self.truth["images"].append({"id": image_id, "height": ids.shape[0], "width": ids.shape[1]})
        if not ids.any():
            return
        n, c = int(ids.max()) + 1, len(self.classes) + 1
        valid = np.where(truth == IGNORE, 0, truth).astype(np.int64)
        votes = np.bincount(ids.ravel().astype(np.int64) * c + valid.ravel(), minlength=n * c).reshape(n, c)
        labels = [int(v) + 1 for v in votes[1:, 1:].argmax(axis=1)]  # each object's most frequent true class
        for r in objects_to_coco_results(ids, labels, [1.0] * len(labels), image_id, self.classes):
            bbox = [float(v) for v in mask_utils.toBbox({**r["segmentation"],
                                                         "counts": r["segmentation"]["counts"].encode("ascii")})]
            self.truth["annotations"].append({**r, "id": len(self.truth["annotations"]) + 1, "bbox": bbox,
                                              "iscrowd": 0})

    def scores(self) -> dict[str, Any]:
        assert self.truth is not None
        objects = "the instance head's, scored by their heatmap peak" if self.head else \
            "connected components of each class, scored by their mean probability"
        return {"objects": objects, "truth": "instance-ID PNGs" if self.from_ids else "COCO json",
                "truth_objects": len(self.truth["annotations"]), "predicted_objects": len(self.results),
                "mask": coco_average_precision(self.truth, self.results, "segm"),
                "box": coco_average_precision(self.truth, self.results, "bbox")}
