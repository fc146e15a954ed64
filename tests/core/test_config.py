"""Tests of ``unetseg.core.config``. Options are defined once (a dataclass field's metadata) and every reader
takes their bounds from there: the command line, YAML files and HTTP queries."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType

import pytest
import yaml

from tests.fixtures import assert_one_line_error, run, write_binary_dataset
from unetseg.cli import main
from unetseg.core.config import Config, bounds, coerce
from unetseg.core.errors import UnetsegError


def test_unknown_config_key(binary_data: Path, tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model: {arch: classic, widht: 8}\n")
    code, _, err = run(["train", "--data", str(binary_data), "--config", str(cfg)], capsys)
    assert_one_line_error(code, err, "cfg.yaml", "unknown key model.widht")


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


def _tighten(monkeypatch: pytest.MonkeyPatch, cls: type, name: str, **bound: float) -> None:
    """Change one bound of option ``name`` of ``cls`` in its one definition."""
    f = cls.__dataclass_fields__[name]
    monkeypatch.setattr(f, "metadata", MappingProxyType({**f.metadata, **bound}))


def test_a_postprocess_bound_changed_once_holds_for_the_flag_and_the_http_query(monkeypatch, capsys, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from unetseg.prediction.postprocess import PostProcess
    from unetseg.serve.app import create_app
    from unetseg.serve.limits import ServeOptions

    _tighten(monkeypatch, PostProcess, "open_px", le=5)
    assert bounds(PostProcess, "open_px") == {"ge": 0, "le": 5}
    code = main(["predict", "--model", str(tmp_path / "m.safetensors"), "--input", str(tmp_path), "--output",
                 str(tmp_path / "out"), "--open", "6"])
    assert code == 2 and "--open: 6 is out of range: it must be <= 5" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path / "m.safetensors"), "--input", str(tmp_path), "--output",
                 str(tmp_path / "out"), "--open", "5"]) == 2  # past the option: the missing model is the error
    assert "m.safetensors" in capsys.readouterr().err
    with TestClient(create_app({}, ServeOptions(review=tmp_path / "reviews"))) as client:
        r = client.post("/predict?open=6", content=b"")
    assert r.status_code == 422 and "it must be <= 5" in r.text


def test_a_spectrogram_bound_changed_once_holds_for_the_flag_and_the_files(monkeypatch, capsys, tmp_path) -> None:
    from unetseg.audio.spectrogram import SpectrogramConfig

    _tighten(monkeypatch, SpectrogramConfig, "n_fft", le=1024)
    code = main(["audio", "spectrogram", "--input", str(tmp_path / "a.wav"), "--output", str(tmp_path / "s"),
                 "--n-fft", "2048"])
    assert code == 2 and "--n-fft: 2048 is out of range: it must be <= 1024" in capsys.readouterr().err
    # a dataset YAML's, a model file's and a review's spectrogram settings are all read by from_dict
    with pytest.raises(UnetsegError, match="spectrogram n_fft: 2048 is out of range: it must be <= 1024"):
        SpectrogramConfig.from_dict(yaml.safe_load("n_fft: 2048\nhop_length: 256"), "dataset.yaml: spectrogram")
    assert SpectrogramConfig.from_dict({"n_fft": 1024, "hop_length": 256}).n_fft == 1024
    assert not (tmp_path / "s").exists()  # refused before any folder was made


def test_a_training_bound_changed_once_holds_for_the_flag_and_the_config_yaml(monkeypatch, capsys, tmp_path) -> None:
    from unetseg.core.config import TrainConfig

    _tighten(monkeypatch, TrainConfig, "lr", le=0.5)
    assert main(["train", "--data", str(tmp_path), "--lr", "0.75"]) == 2
    assert "0.75 is out of range: it must be <= 0.5" in capsys.readouterr().err
    with pytest.raises(UnetsegError, match=r"cfg.yaml: train.lr: 0.75 is out of range: it must be <= 0.5"):
        Config.from_dict(yaml.safe_load("train: {lr: 0.75}"), "cfg.yaml")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("value", "expected"), [("5", 5), (5.0, 5), ("1e3", 1000)])
def test_coerce_reads_whole_numbers_and_refuses_the_rest(value, expected) -> None:
    from unetseg.core.config import TrainConfig

    f = TrainConfig.__dataclass_fields__["epochs"]
    assert coerce(TrainConfig, f, value, "--epochs") == expected
    for bad, why in ((True, "expected an integer"), (2.5, "expected an integer"), ("nan", "expected an integer"),
                     (0, "it must be >= 1")):
        with pytest.raises(UnetsegError, match=why):
            coerce(TrainConfig, f, bad, "--epochs")
    assert dataclasses.is_dataclass(TrainConfig)
