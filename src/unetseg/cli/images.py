"""Image commands: train, evaluate, predict, export, demo, info."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from unetseg.cli.common import (
    add_batch_args,
    add_inference_args,
    add_postprocess_args,
    check_paths,
    group_threads,
    inference_from_args,
    number,
    postprocess_from_args,
    print_metrics,
)
from unetseg.cli.flags import add_config_arguments, overrides_from_args
from unetseg.core.config import Config
from unetseg.core.errors import UnetsegError


def add_image_commands(sub: argparse._SubParsersAction) -> None:

    p = sub.add_parser("train", help="train a model on a dataset; writes a new run folder")
    p.add_argument("--data", help="dataset folder or dataset YAML")
    p.add_argument("--config", help="YAML with any of the options below, by section (data, model, ...)")
    p.add_argument("--resume", metavar="RUN", help="continue the interrupted run in this folder")
    p.add_argument("--no-test", action="store_true", help="skip evaluating the best model on the test split")
    p.add_argument("--reviewed-only", action="store_true", help="with --data <review folder>: leave out the events "
                   "nobody reviewed (deleted ones are always left out)")
    add_config_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a model on a dataset split; metrics, per-image CSV, figures")
    p.add_argument("--model", required=True, help="model file (.safetensors from a run's weights/)")
    p.add_argument("--data", help="dataset folder or dataset YAML [default: the exact files the model's run "
                   "recorded in its dataset.json]")
    p.add_argument("--split", default="test", help="train, valid or test [default: test]")
    p.add_argument("--output", help="output folder [default: a new runs/eval-<dataset>-<split>]")
    p.add_argument("--figures", type=number(int, ge=0), default=None, metavar="N",
                   help="draw figures for the first N images")
    p.add_argument("--overwrite", action="store_true", help="replace the outputs of an earlier evaluation in --output")
    add_postprocess_args(p)
    add_inference_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="predict masks for images; PNG masks at the original size")
    add_batch_args(p, "an image, a folder of images, or a glob pattern", "images")
    p.add_argument("--overlays", action="store_true", help="also write the mask over the image")
    p.add_argument("--probabilities", action="store_true", help="also write probability maps")
    p.add_argument("--contours", action="store_true", help="also write region polygons as JSON")
    p.add_argument("--instances", action="store_true", help="also write 16-bit instance-ID PNGs (instances/<stem>.png: "
                   "0 none, 1..N one object each)")
    p.add_argument("--coco-results", metavar="FILE", help="also write COCO results json (RLE per class and region)")
    p.add_argument("--coco-json", metavar="FILE", help="COCO json of the inputs, for image and category ids")
    add_postprocess_args(p)
    add_inference_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="generate a small dataset, train, evaluate and predict (no data needed)")
    p.add_argument("--runs-dir", default="runs", help="parent folder of the demo's run [default: runs]")
    p.add_argument("--epochs", type=number(int, ge=1, le=10000), default=12, help="training epochs [default: 12]")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("export", help="export a model file to ONNX or TorchScript (normalisation included)")
    p.add_argument("--model", required=True, help="model file")
    p.add_argument("--format", default="onnx", choices=("onnx", "torchscript"), help="[default: onnx]")
    p.add_argument("--output", help="[default: beside the model, .onnx or .torchscript.pt]")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export")
    p.add_argument("--int8", action="store_true", help="ONNX with static int8 quantization (calibrated; refused "
                   "when its masks agree with fp32 below IoU 0.98)")
    p.add_argument("--calibration", metavar="DIR", help="int8 calibration images [default: the training split "
                   "recorded in the model's run]")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("info", help="print what a model file holds")
    p.add_argument("model", help="model file")
    p.set_defaults(func=cmd_info)


def cmd_train(args: argparse.Namespace) -> int:
    check_paths(data=args.data)  # before Lightning is imported
    from unetseg import train

    overrides = overrides_from_args(args)
    if args.resume:
        if args.data or args.config:
            raise UnetsegError("--resume continues a run with its own data and config; drop --data/--config")
        result = train(resume=args.resume, overrides=overrides)
        cfg = Config.from_yaml(Path(args.resume) / "config.yaml")
    else:
        cfg = Config.from_yaml(args.config) if args.config else Config()
        if args.data:
            cfg.data.path = args.data
        if cfg.data.path:
            cfg.data.path = _dataset_of_reviews(cfg.data.path, overrides, cfg, args.reviewed_only)
        elif args.reviewed_only:
            raise UnetsegError("--reviewed-only goes with --data <review folder>")
        result = train(cfg, overrides=overrides)
    if not result.main:  # another process of a multi-process run: rank 0 reports and tests
        return 0
    if result.terminated:
        import sys

        print(f"terminated: the training state is saved; continue with: unetseg train --resume {result.run_dir}",
              file=sys.stderr)
        return 143
    best = "n/a" if result.best_score is None else f"{result.best_score:.4f}"
    print(f"run folder: {result.run_dir}")
    print(f"best {cfg.train.monitor} {best} at epoch {result.best_epoch}; model: {result.best_model}")
    if result.interrupted:
        print(f"interrupted; continue with: unetseg train --resume {result.run_dir}")
        return 130
    if not args.no_test:
        _test_after_training(result, cfg)
    return 0


def _dataset_of_reviews(path: str, overrides: dict, cfg: Config, reviewed_only: bool = False) -> str:
    """A review folder (``serve --review``) as training data: its recordings and corrected events become a
    new dataset folder under the runs folder (as ``audio dataset --review`` makes it), whose path is
    returned; any other path is returned as it is. Reviews with no events are refused before any folder is
    made, and the folder is removed again when the dataset cannot be made."""
    from unetseg.audio.review_files import is_review

    if not is_review(path):
        if reviewed_only:
            raise UnetsegError(f"--reviewed-only: {path} is not a review folder")
        return path
    import shutil

    from unetseg.audio.review_files import safe_name
    from unetseg.audio.review_store import dataset_from_review, review_annotations, reviewed_model
    from unetseg.core.fileio import new_run_dir

    reviewed = review_annotations(path, reviewed_only)
    if not any(reviewed.events.values()):
        which = "reviewed (accepted, corrected or added)" if reviewed_only else "kept (not deleted)"
        raise UnetsegError(f"review {path}: no {which} events to train on; draw or accept some in the page first")

    runs = overrides.get("train", {}).get("runs_dir", cfg.train.runs_dir)
    folder = Path(path).resolve()  # detect --review makes <output>/review: name it after <output>
    label = safe_name(f"{folder.parent.name}-review" if folder.name == "review" else folder.name)
    if not overrides.get("train", {}).get("name") and not cfg.train.name:
        cfg.train.name = label  # the run is named after the review, not after its "dataset" folder
    target = new_run_dir(runs, f"{label}-data")
    if not overrides.get("train", {}).get("init") and not cfg.train.init:
        start = reviewed_model(path)
        if start is not None and overrides.get("model"):  # another architecture asked for: a new model
            print(f"review {path}: model options given, so the run starts from scratch, not from the reviewed "
                  f"model {start} (--init {start} to start from it)")
        elif start is not None:  # the corrections refine the model that made them
            cfg.update({"train": {"init": str(start)}}, "the review")
            print(f"review {path}: the run starts from the reviewed model {start} (as --init)")
    try:
        built = dataset_from_review(path, target / "dataset", reviewed_only=reviewed_only)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)  # the folder made above for this dataset: nothing of the user's
        raise
    print(f"review {path} -> dataset {built.root}: images per split {built.windows}")
    return str(built.root)


def _test_after_training(result: Any, cfg: Config) -> None:
    import json

    from unetseg.evaluation.evaluate_split import evaluate

    if not json.loads((result.run_dir / "dataset.json").read_text())["splits"].get("test"):
        return
    ev = evaluate(result.best_model, None, "test", result.run_dir / "test")  # the run's own test files
    print_metrics(ev.metrics, ev.output)


def cmd_evaluate(args: argparse.Namespace) -> int:
    options, postprocess = inference_from_args(args), postprocess_from_args(args)  # checked before the imports
    check_paths(model=args.model, data=args.data)
    from unetseg.evaluation.evaluate_split import evaluate

    ev = evaluate(args.model, args.data, args.split, args.output, options=options, postprocess=postprocess,
                  figures=args.figures, overwrite=args.overwrite)
    print_metrics(ev.metrics, ev.output)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    options, postprocess = inference_from_args(args), postprocess_from_args(args)  # checked before the imports
    check_paths(model=args.model, inputs=args.input)
    from unetseg.core.distributed import launched_group
    from unetseg.prediction.predict_images import PredictOutputs, predict

    start = time.perf_counter()
    group = launched_group()
    outputs = PredictOutputs(args.overlays, args.probabilities, args.contours, args.instances, args.coco_results,
                             args.coco_json, args.overwrite, args.resume)
    res = predict(args.model, args.input, args.output, options=group_threads(options, group),
                  postprocess=postprocess, outputs=outputs, group=group)
    took = time.perf_counter() - start
    if not group.main:
        return 0
    skipped = len(res.masks) - res.predicted
    done = f"; {skipped} done before" if skipped else ""
    print(f"{res.predicted} masks written to {res.output} ({res.predicted / took:.1f} images/s, "
          f"backend {res.backend}{done})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from unetseg.export.exporter import export

    if args.int8 and args.format != "onnx":
        raise UnetsegError("--int8 needs --format onnx")
    res = export(args.model, args.output, args.format, args.overwrite, int8=args.int8, calibration=args.calibration)
    check = (f"masks agree with fp32 at IoU {res.agreement_iou:.4f} on the calibration images" if args.int8
             else f"max |export - torch| = {res.max_abs_diff:.2e}")
    print(f"{res.path}: raw float32 pixels (N, C, H, W, 0-255) in, probabilities out; dynamic batch and size; "
          f"{check}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from unetseg import train
    from unetseg.data.demo import make_demo_dataset
    from unetseg.evaluation.evaluate_split import evaluate
    from unetseg.prediction.predict_images import PredictOutputs, predict

    data = make_demo_dataset(Path(args.runs_dir) / "demo-data")
    cfg = Config.from_dict({
        "data": {"path": str(data), "size": [128, 128], "workers": 0},
        "model": {"arch": "classic", "depth": 4, "base_width": 16, "dropout": 0.0},
        "augment": {"rotate": 0, "scale": 0, "vflip": 0},
        "train": {"name": "demo", "runs_dir": args.runs_dir, "epochs": args.epochs, "lr": 3e-3,
                  "batch_size": 8, "scheduler": "cosine", "patience": 0, "progress": args.progress},
    })
    print(f"demo dataset: {data} (tonal calls in noise, 128x128, {sum(_count(data))} images)")
    result = train(cfg)
    ev = evaluate(result.best_model, data, "test", result.run_dir / "test", figures=8)
    test_images = sorted((data / "test" / "images").glob("*.png"))[:4]
    pred = predict(result.best_model, test_images, result.run_dir / "predictions",
                   outputs=PredictOutputs(overlays=True, contours=True))
    print_metrics(ev.metrics, ev.output)
    print(f"predictions: {pred.output}")
    print(f"run folder: {result.run_dir}")
    print(f"test IoU: {ev.metrics['iou']:.4f}")
    return 0


def _count(data: Path) -> list[int]:
    return [len(list((data / s / "images").glob("*.png"))) for s in ("train", "valid", "test")]


def cmd_info(args: argparse.Namespace) -> int:
    import json
    import math

    from safetensors import safe_open

    from unetseg.models.modelfile import model_path, validate_model_file

    meta, _ = validate_model_file(args.model)  # the same checks as every command that loads it
    with safe_open(str(model_path(args.model)), framework="pt") as f:
        parameters = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 - not a dict
        for k in f.keys():  # noqa: SIM118 - one tensor at a time: NaN or inf weights are refused as load_model does
            t = f.get_tensor(k)
            if t.is_floating_point() and not bool(t.isfinite().all()):
                raise UnetsegError(f"{args.model}: weight tensor {k} holds NaN or infinite values; the model would "
                                   "predict nonsense - retrain or take an earlier checkpoint")
    print(json.dumps({**meta, "parameters": parameters}, indent=2))
    return 0


