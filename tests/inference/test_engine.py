"""Tests of ``unetseg.inference.engine``."""

from __future__ import annotations

import logging
from pathlib import Path

from tests.fixtures import assert_one_line_error, run, tiny_model_file, write_images


def test_max_memory_is_checked_and_switches_native_images_to_tiles(tmp_path: Path, capsys, caplog) -> None:
    from unetseg.inference import Engine, ImageDataset, InferenceOptions
    from unetseg.models.modelfile import load_model

    images = write_images(tmp_path / "in", 1, (512, 640))
    loaded = load_model(tiny_model_file(tmp_path, "pad"))
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
    code, _, err = run(["predict", "--model", str(tiny_model_file(tmp_path, size=[512, 512])), "--input", str(images),
                        "--output", str(tmp_path / "o"), "--batch-size", "64", "--max-memory", "0.01"], capsys)
    assert_one_line_error(code, err, "needs about", "over the memory budget", "--batch-size")
    code, _, err = run(["predict", "--model", str(tiny_model_file(tmp_path)), "--input", str(images), "--output",
                        str(tmp_path / "o"), "--max-memory", "-1"], capsys)
    assert code == 2 and "max_memory" in err.replace("-", "_") and "Traceback" not in err


def torch_equal(a: object, b: object) -> bool:
    import torch

    return bool(torch.equal(a, b))  # type: ignore[arg-type]


def test_activation_in_place_gives_the_values_of_activate() -> None:
    """The engine's in-place activation (one buffer) equals ``activate`` bit for bit: binary and multi-class,
    with and without the instance head, on a cropped (strided) view as the engine passes it."""
    import torch

    from unetseg.inference.classes import activate, activate_

    for binary, head in ((True, True), (True, False), (False, True), (False, False)):
        logits = torch.randn(2, (1 if binary else 3) + (5 * head), 40, 72) * 8
        view = logits[:, :, :33, :70]
        expected = activate(view, binary, axis=1, head=head)
        got = activate_(view, binary, axis=1, head=head)
        assert torch.equal(got, expected), (binary, head)
        assert got.data_ptr() == logits.data_ptr()  # no copy
