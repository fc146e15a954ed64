"""Tests of ``unetseg.cli`` (``main``): an unexpected error is one line, with its traceback in a file; help starts
without the heavy modules."""

from __future__ import annotations

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
