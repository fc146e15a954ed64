"""Issue 28: outputs that never collide, nothing replaced that unetseg did not write, and every hostile file
one line. Each case is the real command in its own process under a memory cap (``test_guard.cli``): exit 2,
one ``error:`` line naming what is wrong, the user's files unchanged byte for byte, peak memory under 1.5 GB."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.fixtures import check_cases, cli, crafted_model, set_field, write_binary_dataset


@pytest.fixture(scope="module")
def hostile(work: Path) -> Path:  # noqa: F811 - the fixture imported above
    """``work`` plus what these cases need: user files beside outputs, COCO datasets, YAMLs and tables."""
    (work / "recs" / "a.selections.txt").write_text("Selection\tBegin Time (s)\tEnd Time (s)\n1\t0.1\t0.2\n")
    (work / "mine").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(work / "mine" / "im0.png")  # the user's, named like a mask
    (work / "mine" / "notes.txt").write_text("my notes")
    write_binary_dataset(work / "audioish", {"train": 2, "valid": 1}, size=64)
    for name, spectrogram in (("spec_abc", {"n_fft": "abc"}), ("spec_list", [1, 2, 3]),
                              ("spec_hop_true", {"hop_length": True})):
        (work / f"{name}.yaml").write_text(json.dumps({
            "root": "audioish", "train": {"images": "train/images", "masks": "train/masks"},
            "valid": {"images": "valid/images", "masks": "valid/masks"}, "spectrogram": spectrogram}))
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefg", "bcdefgh", strict=True))
    (work / "bomb.yaml").write_text(bomb + "root: data\ntrain: {images: train/images, masks: train/masks}\n"
                                    "classes: [*h, *h]\n")
    (work / "bomb_config.yaml").write_text(bomb.replace("[x,", "[bce,") + "train: {loss: *h}\n")
    for name, extra in (("unpaired_text", "allow_unpaired: 'false'"), ("ignore_text", "ignore_index: void"),
                        ("ignore_inf", "ignore_index: .inf"), ("classes_mixed", "classes: {0: bg, x: call}"),
                        ("classes_nested", "classes: [[a, b], {c: d}]"),
                        ("classes_2000", "classes: [" + ", ".join(f"c{i}" for i in range(2000)) + "]"),
                        ("deep", "name: " + "[" * 5000 + "]" * 5000)):
        (work / f"{name}.yaml").write_text(f"root: data\ntrain: {{images: train/images, masks: train/masks}}\n"
                                           f"{extra}\n")
    (work / "epochs_true.yaml").write_text("train: {epochs: true}\n")
    _coco_cases(work)
    (work / "long_field.txt").write_text("onset_s,offset_s,label\n0.1,0.3," + "x" * 140_000 + "\n")
    (work / "huge_offset.txt").write_text("onset_s,offset_s,label\n0.1,1e308,call\n")
    (work / "far_event.txt").write_text("onset_s,offset_s,label\n0.1,0.3,call\n9999990,10000000,call\n")
    (work / "tabbed.txt").write_text("onset_s,offset_s,label\n0.1,0.3,\"ca\tll\"\n")
    (work / "a_file").write_text("not a folder")
    return work


def _coco_cases(root: Path) -> None:
    """A COCO dataset (one 32x32 image) per malformed json; ``coco_<name>/ann.json``."""
    good = {"images": [{"id": 1, "file_name": "a.png", "height": 32, "width": 32}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "segmentation": [[2, 2, 20, 2, 20, 20, 2, 20]], "area": 324, "bbox": [2, 2, 18, 18]}]}

    def ann(**change: object) -> dict:
        return {**good, "annotations": [{**good["annotations"][0], **change}]}

    cases = {
        "nan": ann(segmentation=[[2, 2, float("nan"), 2, 20, 20]]),
        "huge": ann(segmentation=[[2, 2, 1e12, 2, 20, 1e12]]),
        "points": ann(segmentation=[list(np.tile([2.0, 2.0, 20.0, 2.0], 1_000_000))]),
        "rle_size": ann(segmentation={"size": [100000, 100000], "counts": [0, 10]}),
        "short_polygon": ann(segmentation=[[2, 2, 3]]),
        "string_polygon": ann(segmentation=[["a", "b", "c", "d", "e", "f"]]),
        "null_segmentation": ann(segmentation=None),
        "bad_rle": ann(segmentation={"size": [32, 32], "counts": "!!!"}),
        "rle_out_of_range": ann(segmentation={"size": [32, 32], "counts": [5, 10**9]}),
        "bad_height": {**good, "images": [{"id": 1, "file_name": "a.png", "height": "x", "width": 32}]},
        "unknown_category": ann(category_id=7),
        "giant_canvas": {**good, "images": [{"id": 1, "file_name": "a.png", "height": 100000, "width": 100000}]},
    }
    for name, data in cases.items():
        folder = root / f"coco_{name}"
        folder.mkdir()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "a.png")
        (folder / "ann.json").write_text(json.dumps(data))
        (folder / "data.yaml").write_text("train: {coco: ann.json, images: .}\ntest: {coco: ann.json, images: .}\n")
    (root / "coco_list").mkdir()
    (root / "coco_list" / "ann.json").write_text("[]")


PAD, BIRDS = "pad.safetensors", "birds.safetensors"


PREDICT = ["predict", "--model", PAD, "--backend", "torch"]


DETECT = ["audio", "detect", "--model", BIRDS, "--backend", "torch"]


# name: (command, needle in the error line, the user's paths that must not change)
CASES: dict[str, tuple[list[str], str, list[str]]] = {
    # data loss
    "evaluate into the split's image folder": (
        ["evaluate", "--model", PAD, "--data", "data", "--output", "data/test/images"], "input folder", ["data"]),
    "evaluate into the dataset folder with --overwrite": (
        ["evaluate", "--model", PAD, "--data", "data", "--output", "data", "--overwrite"], "input folder", ["data"]),
    "detect into the recordings' folder with --overwrite": (
        [*DETECT, "--input", "recs", "--output", "recs", "--overwrite"], "input folder", ["recs"]),
    "predict a glob into its folder with --overwrite": (
        [*PREDICT, "--input", "imgs/*.png", "--output", "imgs", "--overwrite"], "input folder", ["imgs"]),
    "predict --overwrite over a user's file": (
        [*PREDICT, "--input", "imgs", "--output", "mine", "--overwrite"], "no earlier unetseg run recorded",
        ["mine"]),
    "coco results onto a mask": (
        [*PREDICT, "--input", "imgs", "--output", "p4", "--coco-results", "p4/im0.png"], "two outputs", []),
    "coco results onto the manifest": (
        [*PREDICT, "--input", "imgs", "--output", "p3", "--coco-results", "p3/inference.json"], "two outputs", []),
    "coco results a folder": (
        [*PREDICT, "--input", "imgs", "--output", "p5", "--coco-results", "recs"], "is a folder", ["recs"]),
    "denoised audio onto the events table": (
        [*DETECT, "--input", "rec.wav", "--output", "d4", "--denoise", "d4/rec.selections.txt"], "two outputs",
        ["rec.wav"]),
    "empty --output": ([*PREDICT, "--input", "imgs", "--output="], "empty", ["imgs"]),
    "empty --input": ([*PREDICT, "--input=", "--output", "p6"], "empty", ["imgs"]),
    "empty --threshold": ([*PREDICT, "--input", "imgs", "--output", "p7", "--threshold="], "empty", ["imgs"]),
    "spectrogram n_fft abc in a dataset YAML": (
        ["train", "--data", "spec_abc.yaml", "--epochs", "1", "--runs-dir", "runs_a"], "n_fft", ["audioish"]),
    "spectrogram as a list in a dataset YAML": (
        ["train", "--data", "spec_list.yaml", "--epochs", "1", "--runs-dir", "runs_a"], "spectrogram", ["audioish"]),
    "hop_length true in a dataset YAML": (
        ["train", "--data", "spec_hop_true.yaml", "--epochs", "1", "--runs-dir", "runs_a"], "hop_length",
        ["audioish"]),
    # folders left before exit 2
    "train --loss bce+": (["train", "--data", "data", "--loss", "bce+", "--runs-dir", "runs_b", "--no-plan"],
                          "loss", ["data"]),
    "train --loss ce on binary data": (["train", "--data", "data", "--loss", "ce", "--runs-dir", "runs_b",
                                        "--no-plan"], "loss", ["data"]),
    # hostile YAML
    "alias bomb in a dataset's classes": (["train", "--data", "bomb.yaml", "--runs-dir", "runs_c"], "expands",
                                          ["data"]),
    "alias bomb in a config's train.loss": (["train", "--data", "data", "--config", "bomb_config.yaml",
                                             "--runs-dir", "runs_c"], "expands", ["data"]),
    "allow_unpaired as text": (["train", "--data", "unpaired_text.yaml", "--runs-dir", "runs_c"], "allow_unpaired",
                               ["data"]),
    "ignore_index as text": (["train", "--data", "ignore_text.yaml", "--runs-dir", "runs_c"], "ignore_index",
                             ["data"]),
    "ignore_index inf": (["train", "--data", "ignore_inf.yaml", "--runs-dir", "runs_c"], "ignore_index", ["data"]),
    "classes as a mixed dict": (["train", "--data", "classes_mixed.yaml", "--runs-dir", "runs_c"], "classes",
                                ["data"]),
    "classes nested": (["train", "--data", "classes_nested.yaml", "--runs-dir", "runs_c"], "classes", ["data"]),
    "2000 classes": (["train", "--data", "classes_2000.yaml", "--runs-dir", "runs_c"], "classes", ["data"]),
    "a name nested 5000 deep": (["train", "--data", "deep.yaml", "--runs-dir", "runs_c"], "nested", ["data"]),
    "epochs: true": (["train", "--data", "data", "--config", "epochs_true.yaml", "--runs-dir", "runs_c"],
                     "train.epochs", ["data"]),
    # bad values of options
    "--device meta": ([*PREDICT, "--input", "imgs", "--output", "p8", "--device", "meta"], "--device", ["imgs"]),
    "--calibration that does not exist": (["export", "--model", PAD, "--output", "x.int8.onnx", "--int8",
                                           "--calibration", "/nonexistent"], "/nonexistent", [PAD]),
    "spectrogram band above any rate": (["audio", "spectrogram", "--input", "rec.wav", "--output", "s9", "--fmin",
                                         "100000", "--fmax", "150000"], "Nyquist", ["rec.wav"]),
    "audio dataset with 601 classes": (["audio", "dataset", "--audio", "recs", "--annotations", "truth.txt",
                                        "--output", "ds601", "--classes", ",".join(f"c{i}" for i in range(601))],
                                       "--classes", ["recs"]),
    # hostile annotation tables
    "a CSV field of 140,000 characters": (["audio", "evaluate", "--reference", "long_field.txt", "--estimate",
                                           "est.txt"], "long_field.txt", []),
    "an offset of 1e308": (["audio", "evaluate", "--reference", "huge_offset.txt", "--estimate", "est.txt"],
                           "huge_offset.txt", []),
    "a label with a tab": (["audio", "evaluate", "--reference", "tabbed.txt", "--estimate", "est.txt"],
                           "tabbed.txt", []),
}


COCO = {
    "nan": "finite", "huge": "", "points": "polygon points", "rle_size": "", "short_polygon": "", "string_polygon": "",
    "null_segmentation": "segmentation", "bad_rle": "", "rle_out_of_range": "RLE counts", "bad_height": "height",
    "unknown_category": "category_id", "giant_canvas": "",
}


@pytest.mark.slow
def test_hostile_commands_are_one_line_and_lose_nothing(hostile: Path) -> None:
    cases = {name: (argv, needle, [hostile / p for p in keep]) for name, (argv, needle, keep) in CASES.items()}
    check_cases(hostile, cases)
    for folder in ("p3", "p4", "p5", "p6", "p7", "p8", "d4", "s9", "ds601", "runs_a", "runs_b", "runs_c"):
        assert not (hostile / folder).exists(), f"{folder} was made before the error"
    assert (hostile / "recs" / "a.selections.txt").read_text().startswith("Selection")


@pytest.mark.slow
def test_malformed_coco_jsons_never_reach_pycocotools(hostile: Path) -> None:
    cases = {f"COCO {name}": (["evaluate", "--model", PAD, "--data", f"coco_{name}/data.yaml", "--backend", "torch",
                               "--output", f"ev_{name}"], needle or "ann.json", [hostile / f"coco_{name}"])
             for name, needle in COCO.items()}
    cases["predict --coco-json that is a list"] = (
        [*PREDICT, "--input", "imgs", "--output", "p9", "--coco-json", "coco_list/ann.json"], "COCO json", [])
    cases["predict --coco-json a folder"] = ([*PREDICT, "--input", "imgs", "--output", "p9", "--coco-json", "recs"],
                                             "recs", [])
    check_cases(hostile, cases)
    assert not list(hostile.glob("ev_*")) and not (hostile / "p9").exists()


MODELS = {
    "float8 weights": (lambda m, t: t.update({k: v.to(__import__("torch").float8_e4m3fn)
                                              for k, v in t.items() if v.is_floating_point()}), "dtype"),
    "n_fft 512.5": (set_field("spectrogram.n_fft", 512.5), "n_fft"),
    "fmin above Nyquist": (lambda m, t: m["spectrogram"].update(fmin=20000.0), "Nyquist"),
    "a class name of 200 kB": (set_field("classes", ["background", "x" * 200_000]), "classes"),
    "a class name with a tab": (set_field("classes", ["background", "ca\tll\nrow"]), "classes"),
    "mean 1e308": (set_field("input.mean", [1e308]), "input.mean"),
}


@pytest.mark.slow
def test_crafted_model_fields_are_one_line(hostile: Path) -> None:
    cases = {}
    for name, (change, needle) in MODELS.items():
        path = str(crafted_model(hostile, "audio-" + name.replace(" ", "_"), change))
        cases[f"info: {name}"] = (["info", path], needle, [])
        cases[f"detect: {name}"] = (["audio", "detect", "--model", path, "--input", "rec.wav", "--output",
                                     f"o-{name}"], needle, [hostile / "rec.wav"])
    check_cases(hostile, cases)


@pytest.mark.slow
def test_the_cache_is_a_file_and_an_image_name_of_230_characters(hostile: Path, tmp_path: Path) -> None:
    env_cli = {**os.environ, "UNETSEG_CACHE": str(hostile / "a_file")}
    old = os.environ.copy()
    os.environ.update(env_cli)
    try:
        code, err, _ = cli(["predict", "--model", PAD, "--backend", "onnxruntime", "--input", "imgs", "--output",
                            str(tmp_path / "p")], hostile)  # the ONNX graph is cached
    finally:
        os.environ.clear()
        os.environ.update(old)
    assert code == 2 and err.strip().count("\n") == 0 and "UNETSEG_CACHE" in err, err
    long = tmp_path / "in"
    long.mkdir()
    Image.fromarray(np.zeros((40, 56, 3), np.uint8)).save(long / ("n" * 230 + ".png"))
    code, err, _ = cli([*PREDICT, "--input", str(long), "--output", str(tmp_path / "q")], hostile)
    assert code == 0, err
    assert (tmp_path / "q" / ("n" * 230 + ".png")).is_file()
