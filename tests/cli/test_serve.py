"""Tests of ``unetseg.cli.serve``."""

from __future__ import annotations


def test_serve_flags_are_checked(capsys) -> None:
    from unetseg.cli import main

    assert main(["serve", "--model", "x.safetensors", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["serve", "--model", "x.safetensors", "--queue", "0"]) == 2
    err = capsys.readouterr().err
    assert "--queue" in err and "out of range" in err and len(err.splitlines()) == 1
