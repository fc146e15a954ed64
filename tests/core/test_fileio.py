"""Tests of ``unetseg.core.fileio``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.fixtures import assert_one_line_error, run, tiny_model_file, write_images


def test_atomic_writes_follow_the_umask(tmp_path: Path) -> None:
    """A lab's shared folder can read what we write: files get 0666 less the umask, not mkstemp's 0600."""
    import os

    from unetseg.core.fileio import write_json, write_png

    old = os.umask(0o002)
    try:
        a = write_json(tmp_path / "a.json", {"x": 1})
        os.umask(0o027)
        b = write_png(tmp_path / "b.png", np.zeros((4, 4), np.uint8))
    finally:
        os.umask(old)
    assert a.stat().st_mode & 0o777 == 0o664 and b.stat().st_mode & 0o777 == 0o640
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_output_that_is_a_file_or_lies_under_one(tmp_path: Path, capsys) -> None:
    model, images = tiny_model_file(tmp_path), write_images(tmp_path / "in")
    (tmp_path / "afile").write_text("mine")
    for out, needle in ((tmp_path / "afile", "exists and is not a folder"),
                        (tmp_path / "afile" / "sub", "is a file")):
        code, _, err = run(["predict", "--model", str(model), "--input", str(images), "--output", str(out)], capsys)
        assert_one_line_error(code, err, str(out), needle)
    assert (tmp_path / "afile").read_text() == "mine"
