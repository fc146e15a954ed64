"""Tests of ``unetseg.cli`` (``main``): an unexpected error is one line, with its traceback in a file; help starts
without the heavy modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from unetseg.cli import main


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


def test_help_imports_neither_torch_nor_opencv() -> None:
    """``unetseg --help`` and a command's ``--help`` build every flag from the settings' dataclasses without
    the heavy modules (torch alone takes seconds to import on a 2-core machine)."""
    import subprocess
    import sys

    script = ("import sys\nfrom unetseg.cli import main\nfor argv in (['--help'], ['audio', 'detect', '--help'], "
              "['predict', '--help'], ['train', '--help']):\n    try:\n        main(argv)\n    except SystemExit:\n"
              "        pass\nprint(sorted(m for m in ('torch', 'cv2', 'lightning', 'onnxruntime', 'scipy') "
              "if m in sys.modules), file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip().splitlines()[-1] == "[]", r.stderr[-2000:]


def test_a_missing_model_input_or_dataset_is_refused_before_torch(tmp_path: Path) -> None:
    """Issue 32: a refusal of a missing file costs no torch or Lightning import (seconds on 2 cores)."""
    import subprocess
    import sys

    model = tmp_path / "m.safetensors"
    model.write_bytes(b"x")  # exists: the input is what is missing
    script = ("import sys\nfrom unetseg.cli import main\ncodes = []\n"
              f"for argv in (['predict', '--model', {str(model)!r}, '--input', 'missing', '--output', 'o'], "
              "['predict', '--model', 'missing.safetensors', '--input', '.', '--output', 'o'], "
              f"['audio', 'detect', '--model', {str(model)!r}, '--input', 'missing.wav', '--output', 'o'], "
              "['train', '--data', 'missing']):\n    codes.append(main(argv))\n"
              "print(codes, sorted(m for m in ('torch', 'lightning', 'cv2') if m in sys.modules), file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert lines[-1] == "[2, 2, 2, 2] []", r.stderr[-2000:]
    assert lines[:4] == ["error: missing: no such file or folder", "error: missing.safetensors: model file not found",
                         "error: missing.wav: no such file or folder", "error: missing: dataset not found"]
