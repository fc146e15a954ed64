"""Tests of ``unetseg.training.warm_start``: ``train --init MODEL`` starts from a model file's weights."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from tests.fixtures import SMALL, assert_one_line_error, run, tiny_model_file
from unetseg.core.config import Config
from unetseg.core.errors import UnetsegError
from unetseg.models import create_model
from unetseg.models.modelfile import load_model
from unetseg.training.warm_start import init_input, load_init_weights

RUN = ["--size", "32", "--epochs", "1", "--batch-size", "4", "--no-progress", "--workers", "0", "--no-test",
       "--val-grid", "0", "--instances", "off"]


def test_matching_tensors_are_copied_and_the_rest_start_fresh(tmp_path: Path) -> None:
    source = load_model(tiny_model_file(tmp_path, seed=3, width=8, depth=3))
    cfg = vars(Config().model) | SMALL | {"depth": 3, "base_width": 8}
    same = create_model(cfg, 3, 1)
    copied, fresh = load_init_weights(same, source.path)
    assert fresh == [] and copied == len(same.state_dict())
    for (name, a), b in zip(same.state_dict().items(), source.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    three = create_model(cfg, 3, 3)  # another number of classes: all but the classifier
    copied, fresh = load_init_weights(three, source.path)
    assert fresh and all(k.startswith(fresh[0].split(".")[0]) for k in fresh) and copied == len(three.state_dict()) - \
        len(fresh)
    other = create_model(vars(Config().model) | SMALL | {"depth": 2, "base_width": 4}, 1, 1)
    with pytest.raises(UnetsegError, match="none of its weights fit"):
        load_init_weights(other, source.path)


def test_a_run_from_a_model_file_takes_its_architecture_and_normalisation(binary_data: Path, tmp_path: Path,
                                                                          capsys, caplog) -> None:
    caplog.set_level(logging.INFO)
    start = tiny_model_file(tmp_path, size=(32, 32), width=8, depth=3, channels=1, norm=((0.3,), (0.2,)), seed=1)
    code, out, err = run(["train", "--data", str(binary_data), "--init", str(start), "--runs-dir",
                          str(tmp_path / "runs"), "--name", "warm", *RUN], capsys)
    assert code == 0, err
    assert any("tensors copied" in r.getMessage() for r in caplog.records)
    plan = json.loads((tmp_path / "runs" / "warm" / "plan.json").read_text())
    width, depth = plan["choices"]["model.base_width"], plan["choices"]["model.depth"]
    assert width["value"] == 8 and depth["value"] == 3  # the model file's, not the plan's
    assert width["reason"] == f"from --init {start}"
    trained = load_model(tmp_path / "runs" / "warm" / "weights" / "last.safetensors")
    assert trained.input_spec.mean == (0.3,) and trained.input_spec.std == (0.2,)
    # a flag that names another architecture is refused in one line, before any folder is made
    code, _, err = run(["train", "--data", str(binary_data), "--init", str(start), "--base-width", "4",
                        "--runs-dir", str(tmp_path / "runs2"), *RUN], capsys)
    assert_one_line_error(code, err, "--init", "base_width", "leave it out")
    assert not (tmp_path / "runs2").exists()
    code, _, err = run(["train", "--data", str(binary_data), "--init", str(tmp_path / "missing.safetensors"),
                        "--runs-dir", str(tmp_path / "runs3"), *RUN], capsys)
    assert_one_line_error(code, err, "missing.safetensors", "not found")


def test_a_spectrogram_model_needs_the_spectrogram_it_saw(tmp_path: Path) -> None:
    from unetseg.audio.spectrogram import SpectrogramConfig
    from unetseg.data.discover import DatasetInfo
    from unetseg.training.warm_start import init_settings

    model = tiny_model_file(tmp_path, "pad", channels=1, spectrogram=SpectrogramConfig().to_dict(), events="box")
    info = DatasetInfo(name="d", source=tmp_path, classes=["background", "call"], splits={}, decoder=None,  # type: ignore[arg-type]
                       spectrogram=SpectrogramConfig(n_fft=1024, hop_length=256).to_dict())
    cfg = Config()
    cfg.train.init = str(model)
    with pytest.raises(UnetsegError, match=r"n_fft 512 \(model\) vs 1024 \(dataset\)"):
        init_settings(cfg, info)
    info.spectrogram = None
    with pytest.raises(UnetsegError, match="trained on spectrograms of recordings"):
        init_settings(cfg, info)
    info.spectrogram = SpectrogramConfig().to_dict()
    meta = init_settings(cfg, info)
    assert meta is not None and cfg.model.base_width == 4 and "model.base_width" in cfg.explicit
    spec = init_input(load_model(model).input_spec, meta)
    assert spec.mean == (0.5,) and spec.std == (0.25,)


def test_a_dataset_on_the_priors_spectrogram_starts_from_the_prior(tmp_path: Path, monkeypatch, caplog) -> None:
    from unetseg.audio import settings
    from unetseg.audio.spectrogram import PRESETS, SpectrogramConfig
    from unetseg.data.discover import DatasetInfo
    from unetseg.training.warm_start import choose_prior

    caplog.set_level(logging.INFO)
    prior = tiny_model_file(tmp_path, "pad", name="prior", channels=1, spectrogram=PRESETS["prior"].to_dict(),
                            events="box")
    monkeypatch.setattr(settings, "PRIOR_FILE", prior)
    info = DatasetInfo(name="d", source=tmp_path, classes=["background", "call"], splits={}, decoder=None,  # type: ignore[arg-type]
                       spectrogram=PRESETS["prior"].to_dict(), events="box")
    cfg = Config()
    assert choose_prior(cfg, info) and cfg.train.init == "builtin" and cfg.sources["train.init"] == "the plan"
    assert any("starts from the prior" in r.getMessage() for r in caplog.records)
    given = Config()
    given.update({"model": {"base_width": 16}}, "command line")  # an architecture asked for: a new model
    assert not choose_prior(given, info) and given.train.init is None
    info.events = "time"  # onset/offset labels: from scratch measured better
    assert not choose_prior(Config(), info)
    info.events = "box"
    info.spectrogram = SpectrogramConfig().to_dict()  # another spectrogram: the prior would not fit
    assert not choose_prior(Config(), info)
    info.spectrogram = PRESETS["prior"].to_dict()
    monkeypatch.setattr(settings, "PRIOR_FILE", tmp_path / "absent.safetensors")
    assert not choose_prior(Config(), info)
