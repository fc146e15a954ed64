"""Issue 10's findings, one regression test each: what a careful or hostile user tried, and what happens now."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from unetseg.cli import main
from unetseg.core.config import Config
from unetseg.core.errors import UnetsegError
from unetseg.data.discover import load_dataset
from unetseg.data.images import read_header, read_image, read_mask_raw
from unetseg.data.stats import check_pairs

from .conftest import shared, write_binary_dataset
from .test_e2e import TINY, assert_one_line_error, run


def _model(tmp: Path, mode: str = "resize", size: list[int] | None = None, width: int = 4, depth: int = 2) -> Path:
    """An untrained small model file (weights do not matter to these checks)."""
    from unetseg.data.inputspec import InputSpec
    from unetseg.models import create_model
    from unetseg.models.modelfile import build_meta, save_model_file

    model_cfg = vars(Config().model) | {"arch": "classic", "depth": depth, "base_width": width, "dropout": 0.0}
    spec = InputSpec(3, tuple(size or [32, 32]) if mode != "pad" else None, mode, 2**depth, (0.5,) * 3, (0.25,) * 3)
    meta = build_meta(model_cfg, ["background", "call"], True, [(0, 0, 0), (255, 0, 0)], spec, 0.5)
    return save_model_file(tmp / f"{mode}.safetensors", create_model(model_cfg, 3, 1), meta)


def _images(folder: Path, n: int = 3, size: tuple[int, int] = (40, 56)) -> Path:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / f"im{i}.png")
    return folder


def _dead_pid() -> int:
    """The id of a process that has ended."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


# ------------------------------------------------------------------------------------------- safety net

def test_unexpected_exception_is_one_line_with_the_traceback_in_a_file(monkeypatch, capsys, tmp_path) -> None:
    import unetseg.cli.images as images

    monkeypatch.setenv("UNETSEG_CACHE", str(tmp_path / "cache"))

    def boom(_args: object) -> int:
        raise ZeroDivisionError("something deep broke")

    monkeypatch.setattr(images, "cmd_info", boom)
    code = main(["info", "x"])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "ZeroDivisionError: something deep broke" in err and "--debug" in err
    saved = next((tmp_path / "cache" / "errors").glob("*.txt"))
    assert "Traceback" in saved.read_text() and str(saved) in err
    with pytest.raises(ZeroDivisionError):
        main(["--debug", "info", "x"])


# -------------------------------------------------------------------------------------- options, paths

def test_output_that_is_a_file_or_lies_under_one(tmp_path: Path, capsys) -> None:
    model, images = _model(tmp_path), _images(tmp_path / "in")
    (tmp_path / "afile").write_text("mine")
    for out, needle in ((tmp_path / "afile", "exists and is not a folder"),
                        (tmp_path / "afile" / "sub", "is a file")):
        code, _, err = run(["predict", "--model", str(model), "--input", str(images), "--output", str(out)], capsys)
        assert_one_line_error(code, err, str(out), needle)
    assert (tmp_path / "afile").read_text() == "mine"


def test_tile_on_a_model_that_resizes_is_refused(tmp_path: Path, capsys) -> None:
    code, _, err = run(["predict", "--model", str(_model(tmp_path)), "--input", str(_images(tmp_path / "in")),
                        "--output", str(tmp_path / "o"), "--tile", "256"], capsys)
    assert_one_line_error(code, err, "--tile 256", "scales every image to 32x32")
    assert not (tmp_path / "o").exists()


class _Payload:
    def __reduce__(self) -> tuple:
        return (Path.write_text, (Path("/tmp/unetseg-pwned"), "ran"))


def test_pickle_as_last_ckpt_is_refused_in_one_line_and_never_runs(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "weights").mkdir(parents=True)
    (run_dir / "config.yaml").write_text(Config().to_yaml())
    (run_dir / "weights" / "last.ckpt").write_bytes(pickle.dumps({"state_dict": _Payload(), "epoch": 1}))
    Path("/tmp/unetseg-pwned").unlink(missing_ok=True)
    code, _, err = run(["train", "--resume", str(run_dir)], capsys)
    assert_one_line_error(code, err, "last.ckpt", "not a training checkpoint that loads safely")
    assert not Path("/tmp/unetseg-pwned").exists()


def test_max_memory_is_checked_and_switches_native_images_to_tiles(tmp_path: Path, capsys, caplog) -> None:
    from unetseg.inference import Engine, ImageDataset, InferenceOptions
    from unetseg.models.modelfile import load_model

    images = _images(tmp_path / "in", 1, (512, 640))
    loaded = load_model(_model(tmp_path, "pad"))
    whole = Engine(loaded, InferenceOptions(backend="torch"))
    need = whole.guard.estimate(1, 512, 640)
    tight = InferenceOptions(backend="torch", max_memory=(need * 0.3) / 2**30)
    with caplog.at_level(logging.INFO, "unetseg.inference.engine"):
        _, auto = next(Engine(loaded, tight).run(ImageDataset(sorted(images.iterdir()), loaded.input_spec)))
    assert "over the memory budget" in caplog.text and "predicting in tiles of" in caplog.text
    tile = Engine(loaded, tight).guard.tile()
    assert tile is not None and tile < 640
    _, tiled = next(Engine(loaded, InferenceOptions(backend="torch", tile=tile)).run(
        ImageDataset(sorted(images.iterdir()), loaded.input_spec)))
    assert torch_equal(auto, tiled)
    # a model that resizes cannot tile: over the budget it is an error before any work
    code, _, err = run(["predict", "--model", str(_model(tmp_path, size=[512, 512])), "--input", str(images),
                        "--output", str(tmp_path / "o"), "--batch-size", "64", "--max-memory", "0.01"], capsys)
    assert_one_line_error(code, err, "needs about", "over the memory budget", "--batch-size")
    code, _, err = run(["predict", "--model", str(_model(tmp_path)), "--input", str(images), "--output",
                        str(tmp_path / "o"), "--max-memory", "-1"], capsys)
    assert code == 2 and "max_memory" in err.replace("-", "_") and "Traceback" not in err


def torch_equal(a: object, b: object) -> bool:
    import torch

    return bool(torch.equal(a, b))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ labels

def _jpeg_dataset(root: Path, multi: bool = False) -> Path:
    rng = np.random.default_rng(1)
    for split, n in (("train", 6), ("valid", 2), ("test", 2)):
        for i in range(n):
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            image = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / split / "images" / f"{i}.png")
            mask = np.zeros((48, 48), np.uint8)
            mask[8:30, 10:40] = 255 if not multi else 1
            if multi:
                mask[30:44, 4:20] = 2
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.jpg", quality=75)
    return root


def test_binary_jpeg_masks_are_snapped_with_a_count(tmp_path: Path, caplog) -> None:
    info = load_dataset(_jpeg_dataset(tmp_path / "d"))
    assert info.binary and info.decoder.snap and info.num_classes == 2
    raw = read_mask_raw(info.split("train")[0].mask)
    assert len(np.unique(raw)) > 2  # compression noise was there
    with caplog.at_level(logging.WARNING):
        stats = check_pairs(info.split("train"), info.decoder)
    assert "snapped to 0 or 255" in caplog.text and "pixels" in caplog.text
    assert stats.total[1] == 6 * 22 * 30  # the drawn rectangle exactly, not 256 classes


def test_multiclass_jpeg_masks_are_an_error(tmp_path: Path, capsys) -> None:
    data = _jpeg_dataset(tmp_path / "d", multi=True)
    code, _, err = run(["train", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), *TINY], capsys)
    assert_one_line_error(code, err, ".jpg", "save masks as PNG")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_a_bad_test_mask_is_found_before_training(tmp_path: Path, capsys) -> None:
    data = write_binary_dataset(tmp_path / "d", {"train": 6, "valid": 2, "test": 2})
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(data / "test" / "masks" / "test1.png")
    code, _, err = run(["train", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), *TINY], capsys)
    assert_one_line_error(code, err, "test1.png", "outside the classes")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_to_images_and_masks(tmp_path: Path, orientation: int) -> None:
    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 255, (6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.png"
    Image.fromarray(stored).save(path, exif=exif)
    with Image.open(path) as img:
        displayed = np.asarray(ImageOps.exif_transpose(img))
    assert read_header(path).orientation == orientation
    assert (read_image(path) * 255).round().astype(np.uint8).tolist() == displayed.tolist()
    assert read_mask_raw(path).tolist() == displayed.tolist()
    assert read_header(path).height == displayed.shape[0] and read_header(path).width == displayed.shape[1]


def test_rotated_phone_photo_pairs_with_the_mask_drawn_as_displayed(tmp_path: Path, capsys) -> None:
    """A JPEG stored 60x40 and shown 40x60 gets a 40x60 mask; training reads both as displayed and predict
    writes its mask in the displayed orientation."""
    root = tmp_path / "d"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    for split, n in (("train", 4), ("valid", 2), ("test", 2)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(n):
            displayed = np.zeros((64, 32, 3), np.uint8)
            displayed[:32] = 250  # bright top half, as the user sees the photo
            stored = np.rot90(displayed, 1)  # what the camera saved
            Image.fromarray(np.ascontiguousarray(stored)).save(root / split / "images" / f"{i}.jpg", exif=exif)
            mask = np.zeros((64, 32), np.uint8)
            mask[:32] = 255  # drawn on the displayed picture
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")
    info = load_dataset(root)
    stats = check_pairs(info.split("train"), info.decoder)
    assert stats.sizes[0] == (64, 32)
    image = read_image(info.split("train")[0].image)
    mask = info.decoder.decode(read_mask_raw(info.split("train")[0].mask))
    bright = image[..., 0] > 0.5
    assert (bright == (mask == 1)).mean() > 0.95  # label and pixels line up
    code, _, _ = run(["predict", "--model", str(_model(tmp_path, "pad")), "--input", str(root / "test" / "images"),
                      "--output", str(tmp_path / "pred"), "--backend", "torch"], capsys)
    assert code == 0
    assert np.asarray(Image.open(tmp_path / "pred" / "0.png")).shape == (64, 32)


def test_mixed_grey_and_rgb_become_rgb_with_a_warning(tmp_path: Path, caplog) -> None:
    data = write_binary_dataset(tmp_path / "d", {"train": 4, "valid": 2})
    first = data / "train" / "images" / "train0.png"
    Image.open(first).convert("RGB").save(first)
    info = load_dataset(data)
    with caplog.at_level(logging.WARNING):
        channels = check_pairs(info.split("train") + info.split("valid"), info.decoder).input_channels(data)
    assert channels == 3 and "grey and 1 colour images" in caplog.text


def test_animated_gif_is_read_as_its_first_frame_everywhere(tmp_path: Path, caplog) -> None:
    from unetseg.core.fileio import list_inputs
    from unetseg.data.discover import list_images
    from unetseg.data.images import IMAGE_EXTENSIONS

    frames = [Image.fromarray(np.full((8, 8, 3), rgb, np.uint8)) for rgb in ((40, 90, 160), (200, 10, 10))]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    assert list_images(tmp_path) == [gif]
    assert list_inputs(tmp_path, IMAGE_EXTENSIONS, "images") == list_inputs(gif, IMAGE_EXTENSIONS, "images") == [gif]
    with caplog.at_level(logging.WARNING):
        image = read_image(gif)
    assert image.shape == (8, 8, 3) and np.allclose(image[0, 0] * 255, (40, 90, 160), atol=6)
    assert "animated (2 frames); the first frame is used" in caplog.text


def test_evaluate_on_a_yaml_with_only_a_test_split(tmp_path: Path, capsys) -> None:
    data = write_binary_dataset(tmp_path / "d", {"test": 3})
    yaml_path = tmp_path / "test-only.yaml"
    yaml_path.write_text(f"root: {data}\ntest: {{images: test/images, masks: test/masks}}\nclasses: [bg, call]\n")
    model = _model(tmp_path, size=[64, 64])
    code, out, err = run(["evaluate", "--model", str(model), "--data", str(yaml_path), "--output",
                          str(tmp_path / "ev"), "--backend", "torch"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["images"] == 3


# ---------------------------------------------------------------------------------------- half-written

def test_predict_resume_finishes_an_interrupted_folder_and_refuses_other_options(tmp_path: Path, capsys) -> None:
    model, images = _model(tmp_path, "pad"), _images(tmp_path / "in", 4)
    base = ["predict", "--model", str(model), "--input", str(images), "--backend", "torch", "--contours"]
    assert run([*base, "--output", str(tmp_path / "full")], capsys)[0] == 0
    out = tmp_path / "part"
    assert run([*base, "--output", str(out)], capsys)[0] == 0
    (out / "im1.png").unlink()
    (out / "contours" / "im2.json").unlink()
    dead = _dead_pid()
    (out / f".im3.png.unetseg-{dead}-abc123.tmp.png").write_bytes(b"half a png")  # what kill -9 left
    (out / ".notes.tmp.txt").write_text("mine")  # a user's hidden files, which look temporary
    (out / ".mydata.partial").write_text("mine too")
    code, _, err = run([*base, "--output", str(out)], capsys)
    assert_one_line_error(code, err, "already exists", "--resume")
    code, _, err = run([*base, "--output", str(out), "--resume", "--threshold", "0.3"], capsys)
    assert_one_line_error(code, err, "other options", "postprocess.threshold")
    code, printed, err = run([*base, "--output", str(out), "--resume"], capsys)
    assert code == 0, err
    assert "2 masks written" in printed and "2 done before" in printed
    assert sorted(f.name for f in out.glob(".*")) == [".mydata.partial", ".notes.tmp.txt"]
    for f in (tmp_path / "full").rglob("*"):
        if f.is_file() and f.name != "inference.json":
            assert f.read_bytes() == (out / f.relative_to(tmp_path / "full")).read_bytes(), f
    assert json.loads((out / "inference.json").read_text())["complete"] is True


@pytest.mark.slow
def test_failed_train_run_leaves_no_folder(binary_data: Path, tmp_path: Path, capsys) -> None:
    import cv2

    image = binary_data / "train" / "images" / "train0.png"
    cv2.imwrite(str(image.with_suffix(".tiff")), np.full((64, 64), np.nan, np.float32))
    image.unlink()
    code, _, err = run(["train", "--data", str(binary_data), "--runs-dir", str(tmp_path / "runs"), "--epochs", "1",
                        "--size", "64", "--normalize", "none", "--batch-size", "24", *TINY[:6], "--no-progress"],
                       capsys)
    assert code == 2 and "training loss became nan" in err
    assert not any((tmp_path / "runs").iterdir())


def test_audio_dataset_with_a_bad_recording_leaves_nothing_and_reruns(tmp_path: Path, capsys) -> None:
    birds = shared("bird-audio")
    src = tmp_path / "rec"
    src.mkdir()
    spinetail = birds / "spinetail"
    (src / "spinetail.wav").symlink_to(spinetail / "spinetail.wav")
    (src / "spinetail.txt").write_text("1.0\t2.0\tSP\n")
    (src / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (src / "broken.txt").write_text("0.1\t0.2\tSP\n")
    out = tmp_path / "ds"
    code, _, err = run(["audio", "dataset", "--audio", str(src), "--output", str(out)], capsys)
    assert code == 2 and "broken.wav" in err
    assert not out.exists() and not list(tmp_path.glob(".ds.partial-*"))
    (src / "broken.wav").unlink()
    (src / "broken.txt").unlink()
    code, _, err = run(["audio", "dataset", "--audio", str(src), "--output", str(out)], capsys)
    assert code == 0, err
    assert (out / "dataset.yaml").is_file()


def test_annotation_messages_say_what_is_wrong(tmp_path: Path, capsys) -> None:
    from unetseg.audio.annotations import read_annotations

    cases = {"neg.txt": ("-0.5\t1.0\tSP\n", "negative time"), "nan.txt": ("nan\t1.0\tSP\n", "not a finite number"),
             "inf.csv": ("onset,offset,label\n0.1,inf,SP\n", "not a finite number")}
    for name, (text, needle) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UnetsegError, match=needle):
            read_annotations(tmp_path / name)
    birds = shared("bird-audio")
    src = tmp_path / "rec"
    src.mkdir()
    (src / "spinetail.wav").symlink_to(birds / "spinetail" / "spinetail.wav")
    table = tmp_path / "all.csv"
    table.write_text("file,onset,offset,label\nspinetial.wav,1.0,2.0,SP\n")  # misspelt
    code, _, err = run(["audio", "dataset", "--audio", str(src), "--annotations", str(table), "--output",
                        str(tmp_path / "ds")], capsys)
    assert_one_line_error(code, err, "all.csv", "'spinetial.wav'", "spinetail.wav has no rows")


# ------------------------------------------------------------------------ what the fuzz tests found

@pytest.mark.parametrize(("option", "value", "needle"), [
    ("data.size", False, "whole pixels"),  # was a ZeroDivisionError in the plan
    ("data.size", [40, 40], "not divisible by 16"),  # was a tensor shape error in the plan's probe
    ("data.size", 65536, "over the memory budget"),  # was a 34 GB allocation in the plan's probe
    ("train.accelerator", False, "expected text"),  # was Lightning's ValueError
    ("train.accelerator", "gpuu", "is not one of"),
    ("train.devices", "7", "must be auto, a count"),
    ("train.loss", "0.5*bce+-1*dice", "weights must be positive"),
    ("model.encoder", "nonexistent", "unknown encoder"),  # was a KeyError in the plan
])
def test_config_values_found_by_fuzzing(option: str, value: object, needle: str, tmp_path: Path, capsys) -> None:
    import yaml

    section, key = option.split(".")
    extra = {"model": {"arch": "unet"}} if key == "encoder" else {}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**extra, section: {**extra.get(section, {}), key: value}}))
    data = write_binary_dataset(tmp_path / "d", {"train": 6, "valid": 2})
    code, _, err = run(["train", "--config", str(tmp_path / "c.yaml"), "--data", str(data), "--runs-dir",
                        str(tmp_path / "runs"), "--epochs", "1", "--no-progress"], capsys)
    assert_one_line_error(code, err, needle)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(("field", "value", "needle"), [
    ("input.size", None, "input.size"),  # a resize model without a size was an AssertionError
    ("colours", None, "colours"),  # was a TypeError when drawing
    ("input.divisor", 2, "stride"),  # smaller than the model's stride: a tensor shape error
])
def test_model_file_fields_found_by_fuzzing(field: str, value: object, needle: str, tmp_path: Path) -> None:
    from unetseg.models.modelfile import check_meta, read_meta

    meta = read_meta(_model(tmp_path))
    *parents, last = field.split(".")
    target = meta
    for k in parents:
        target = target[k]
    target[last] = value
    with pytest.raises(UnetsegError, match=needle):
        check_meta(meta, "m.safetensors")
