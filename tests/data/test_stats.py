"""Tests of ``unetseg.data.stats``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from tests.fixtures import TINY, assert_one_line_error, run, write_binary_dataset


def test_a_bad_test_mask_is_found_before_training(tmp_path: Path, capsys) -> None:
    data = write_binary_dataset(tmp_path / "d", {"train": 6, "valid": 2, "test": 2})
    Image.fromarray(np.full((64, 64), 7, np.uint8)).save(data / "test" / "masks" / "test1.png")
    code, _, err = run(["train", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), *TINY], capsys)
    assert_one_line_error(code, err, "test1.png", "outside the classes")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
