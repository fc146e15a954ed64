"""Tests of ``unetseg.plan.planner``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from unetseg.cli import main
from unetseg.core.config import Config
from unetseg.core.errors import UnetsegError
from unetseg.data.discover import load_dataset
from unetseg.data.stats import check_pairs
from unetseg.plan import make_plan


def test_spectrogram_datasets_default_to_a_narrow_unet_unless_told() -> None:
    from types import SimpleNamespace

    from unetseg.core.config import Config
    from unetseg.plan import AUDIO_BASE_WIDTH
    from unetseg.training import audio_model_defaults

    audio, images = SimpleNamespace(spectrogram={"n_fft": 512}), SimpleNamespace(spectrogram=None)
    cfg = Config()
    audio_model_defaults(cfg, audio)
    assert cfg.model.base_width == AUDIO_BASE_WIDTH == 8
    told = Config.from_dict({"model": {"base_width": 16}})
    audio_model_defaults(told, audio)
    assert told.model.base_width == 16 and "model.base_width" in told.explicit
    plain = Config()
    audio_model_defaults(plain, images)
    assert plain.model.base_width == 32


@pytest.mark.slow
def test_plan_chooses_and_respects_what_the_user_set(rare_data: Path) -> None:
    info = load_dataset(rare_data)
    stats = check_pairs(info.split("train") + info.split("valid"), info.decoder)
    planned = Config.from_dict({"data": {"path": str(rare_data)}})
    plan = make_plan(planned, info, stats, 3)
    assert planned.train.loss == "ce+dice" and planned.train.sampler == "rare"
    weights = [float(w) for w in planned.train.class_weights.split(",")]
    assert weights[2] == max(weights) and weights[2] > 1
    assert planned.data.resize_mode == "pad" and planned.data.crop is None  # small images train whole
    assert planned.train.scheduler == "warmup-cosine" and planned.train.precision in ("bf16-mixed", "32-true")
    assert planned.model.base_width == 32  # the default model without --max-time
    assert plan.probe["precision"]["images_per_s"]["fp32"] > 0
    record = plan.to_dict()
    assert record["choices"]["train.sampler"]["set_by"] == "plan" and record["choices"]["train.sampler"]["reason"]
    assert record["fingerprint"]["train_images_with"] == [12, 12, 3]

    user = Config.from_dict({"data": {"path": str(rare_data), "size": [32, 32]},
                             "train": {"loss": "ce", "precision": "32-true", "sampler": "uniform"},
                             "model": {"base_width": 8}})
    plan = make_plan(user, info, stats, 3)
    assert (user.train.loss, user.train.precision, user.train.sampler) == ("ce", "32-true", "uniform")
    assert user.data.size == [32, 32] and user.data.resize_mode == "resize"  # geometry group kept
    assert user.model.base_width == 8 and user.model.depth == 4
    choices = plan.to_dict()["choices"]
    assert choices["train.loss"]["set_by"] == choices["data.size"]["set_by"] == "user"
    # the user's size keeps its geometry group: the mode stays the default, and the plan says why
    assert choices["data.resize_mode"] == {"value": "resize", "set_by": "plan",
                                           "reason": "default, kept with the options you set"}
    assert "precision" not in plan.probe  # nothing to probe when the user chose

    weights = Config.from_dict({"data": {"path": str(rare_data)}, "model": {"encoder_weights": "w.pth"},
                                "train": {"max_time": 2.0}})
    make_plan(weights, info, stats, 3)
    assert (weights.model.arch, weights.model.base_width) == ("classic", 32)  # no model swapped under weights


def test_budget_picks_model_and_epochs(rare_data: Path) -> None:
    info = load_dataset(rare_data)
    stats = check_pairs(info.split("train") + info.split("valid"), info.decoder)
    cfg = Config.from_dict({"data": {"path": str(rare_data)}, "train": {"max_time": 2.0}})
    plan = make_plan(cfg, info, stats, 3)
    rates = plan.probe["model"]["images_per_s"]
    assert set(rates) == {"classic U-Net w16", "classic U-Net w32", "U-Net / ResNet-18 (smp)"}
    assert cfg.train.patience == 0 and cfg.train.max_time < 2.0  # planning time comes out of the budget
    assert cfg.train.epochs >= 10 and plan.estimate["epochs_in_budget"] > 0
    with pytest.raises(UnetsegError, match="used up by planning"):
        make_plan(Config.from_dict({"data": {"path": str(rare_data)}, "train": {"max_time": 0.001}}), info, stats, 3)


def test_train_saves_plan_json_and_keeps_flags(rare_data: Path, tmp_path: Path) -> None:
    code = main(["train", "--data", str(rare_data), "--epochs", "1", "--base-width", "8", "--depth", "2",
                 "--loss", "ce", "--no-progress", "--workers", "0", "--runs-dir", str(tmp_path / "runs"),
                 "--name", "planned", "--no-test"])
    assert code == 0
    run = tmp_path / "runs" / "planned"
    plan = json.loads((run / "plan.json").read_text())
    assert (plan["choices"]["train.loss"]["value"], plan["choices"]["train.loss"]["set_by"]) == ("ce", "user")
    assert plan["choices"]["train.sampler"]["value"] == "rare"
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["train"]["loss"] == "ce" and config["train"]["epochs"] == 1
    assert config["train"]["class_weights"] == plan["choices"]["train.class_weights"]["value"]
    assert config["model"]["base_width"] == 8

    code = main(["train", "--data", str(rare_data), "--epochs", "1", "--no-plan", "--base-width", "8", "--depth",
                 "2", "--no-progress", "--workers", "0", "--runs-dir", str(tmp_path / "runs"), "--name", "plain",
                 "--no-test"])
    assert code == 0 and not (tmp_path / "runs" / "plain" / "plan.json").exists()


def test_bad_class_weights_are_one_line_errors(rare_data: Path, tmp_path: Path, capsys) -> None:
    for value, needle in (("1,2", "2 weights for 3 classes"), ("1,x,2", "numbers separated by commas"),
                          ("1,0,2", "positive")):
        code = main(["train", "--data", str(rare_data), "--class-weights", value, "--epochs", "1",
                     "--runs-dir", str(tmp_path / "runs"), "--no-progress"])
        err = capsys.readouterr().err
        assert code != 0 and needle in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_planned_native_size_trains_on_images_of_mixed_sizes(tmp_path: Path) -> None:
    """The plan trains small images whole at native size; batches of different sizes are padded (the
    padding counts in no loss or metric)."""
    from unetseg.core.fileio import write_png

    rng = np.random.default_rng(1)
    root = tmp_path / "mixed"
    for split, n in (("train", 8), ("valid", 3), ("test", 2)):
        for i in range(n):
            h, w = (48, 64) if i % 2 else (64, 40)
            mask = np.zeros((h, w), np.uint8)
            mask[h // 4:h // 2, w // 4:w // 2] = 255
            image = (mask // 2 + rng.integers(0, 60, (h, w))).astype(np.uint8)
            write_png(root / split / "images" / f"{i}.png", image)
            write_png(root / split / "masks" / f"{i}.png", mask)
    assert main(["train", "--data", str(root), "--epochs", "1", "--base-width", "8", "--depth", "2",
                 "--no-progress", "--workers", "0", "--runs-dir", str(tmp_path / "runs"), "--name", "m"]) == 0
    plan = json.loads((tmp_path / "runs" / "m" / "plan.json").read_text())
    assert plan["choices"]["data.resize_mode"]["value"] == "pad" and plan["choices"]["data.crop"]["value"] is None
    assert plan["fingerprint"]["size_min"] == [48, 40] and plan["fingerprint"]["size_max"] == [64, 64]
    metrics = json.loads((tmp_path / "runs" / "m" / "test" / "metrics.json").read_text())
    assert metrics["images"] == 2 and 0.0 <= metrics["iou"] <= 1.0  # evaluated at native size


def test_out_of_range_options_are_one_line_errors(rare_data: Path, tmp_path: Path, capsys) -> None:
    bad = [("train", "lr", -1), ("train", "batch_size", 0), ("train", "epochs", -3), ("model", "base_width", 0),
           ("model", "dropout", 2), ("train", "threshold", 5), ("train", "patience", -2), ("model", "depth", 0),
           ("train", "max_time", 0), ("augment", "hflip", 1.5), ("train", "lr", float("nan"))]
    for section, key, value in bad:
        with pytest.raises(UnetsegError, match=rf"{section}\.{key}: .* (out of range|not a finite number)"):
            Config.from_dict({section: {key: value}})
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  batch_size: 0\n")
    code = main(["train", "--data", str(rare_data), "--config", str(config), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code != 0 and "train.batch_size: 0 is out of range: it must be >= 1" in err and "Traceback" not in err
    code = main(["train", "--data", str(rare_data), "--dropout", "1", "--runs-dir", str(tmp_path / "runs")])
    assert code != 0 and "model.dropout: 1.0 is out of range: it must be < 1.0" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
