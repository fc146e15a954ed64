"""Tests of ``unetseg.cli.serve``."""

from __future__ import annotations


def test_serve_flags_are_checked(capsys) -> None:
    from unetseg.cli import main

    assert main(["serve", "--model", "x.safetensors", "--port", "70000"]) == 2
    assert "--port" in capsys.readouterr().err
    assert main(["serve", "--model", "x.safetensors", "--queue", "0"]) == 2
    err = capsys.readouterr().err
    assert "--queue" in err and "out of range" in err and len(err.splitlines()) == 1


def test_serve_checks_its_folders_and_defaults_to_the_builtin_prior(tmp_path, capsys, monkeypatch) -> None:
    from unetseg.cli import main

    (tmp_path / "file.txt").write_text("x")
    assert main(["serve", "--recordings", str(tmp_path / "missing")]) == 2
    assert "--recordings" in capsys.readouterr().err
    assert main(["serve", "--review", str(tmp_path / "file.txt")]) == 2
    assert "not a folder" in capsys.readouterr().err
    started = {}
    monkeypatch.setattr("unetseg.serve.serve", lambda models, host, port, options: started.update(models=models))
    assert main(["serve", "--recordings", str(tmp_path)]) == 0
    assert started["models"] == ["builtin"]  # no --model: the built-in call prior
