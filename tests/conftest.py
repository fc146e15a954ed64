"""Fixtures shared by the tests of several packages (helpers are in ``tests/fixtures.py``)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.fixtures import (
    EXAMPLES,
    TINY_CFG,
    audio_model,
    shared,
    tiny_model_file,
    write_binary_dataset,
    write_blob_dataset,
    write_images,
    write_rare_class_dataset,
)
from unetseg.cli import main
from unetseg.core.config import Config


@pytest.fixture(scope="session")
def birds() -> Path:
    return shared("bird-audio")


@pytest.fixture(scope="session")
def finch_model(birds: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finch")
    assert main(["audio", "dataset", "--audio", str(birds / "bengalese-finch-gy6or6" / "wav"), "--annotations",
                 str(birds / "bengalese-finch-gy6or6" / "annotations_generic.csv"), "--output",
                 str(root / "data")]) == 0
    # Column decoding of a time-only model; the instance head is trained in tests/test_instances.py.
    assert main(["train", "--data", str(root / "data"), "--size", "256", "--arch", "classic", "--depth", "3",
                 "--base-width", "8", "--epochs", "1", "--batch-size", "8", "--no-progress", "--workers", "0",
                 "--runs-dir", str(root / "runs"), "--name", "finch", "--no-test", "--instances", "off"]) == 0
    return root / "runs" / "finch" / "weights" / "best.safetensors"


@pytest.fixture
def tiny_model(tmp_path: Path) -> Path:
    return tiny_model_file(tmp_path, size=(32, 32), name="tiny", cfg=TINY_CFG, channels=1, seed=0)


@pytest.fixture(scope="module")
def work() -> Path:
    """A user's folder: models, images, a dataset, recordings, annotations and earlier outputs."""
    root = Path(tempfile.mkdtemp(prefix="unetseg-guard-"))
    tiny_model_file(root, "pad", width=4, depth=2)  # root/pad.safetensors
    audio_model(root, bias=0.0)  # root/birds.safetensors
    write_images(root / "imgs", 2)
    write_binary_dataset(root / "data", {"train": 4, "valid": 2, "test": 2}, size=64)
    rng = np.random.default_rng(0)
    sr = 22050
    y = (0.05 * rng.standard_normal(2 * sr)).astype(np.float32)
    sf.write(root / "rec.wav", y, sr, subtype="FLOAT")
    sf.write(root / "tiny.wav", y[:100], sr, subtype="FLOAT")  # shorter than one STFT window
    sf.write(root / "rec4.wav", np.concatenate([y, y]), sr, subtype="FLOAT")  # longer than an n_fft of 65536
    (root / "recs").mkdir()
    sf.write(root / "recs" / "a.wav", y, sr, subtype="FLOAT")
    (root / "truth.txt").write_text("onset_s,offset_s,label\n0.1,0.3,call\n")
    (root / "est.txt").write_text("onset_s,offset_s,label\n0.12,0.31,call\n")
    Image.fromarray(np.full((256, 341), 255, np.uint8)).save(root / "mask.png")  # the default preset's 2 s image
    (root / "evaluated").mkdir()
    for name in ("metrics.json", "inference.json"):
        (root / "evaluated" / name).write_text('{"earlier": true}\n')
    (root / "huge").mkdir()
    Image.new("RGB", (10000, 10000)).save(root / "huge" / "h.png", compress_level=1)
    (root / "spec").mkdir()
    (root / "spec" / "rec.png").write_bytes(b"an earlier spectrogram")
    (root / "spec" / "rec.json").write_text("{}")
    return root


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny classic U-Net trained for five epochs on synthetic discs, in a run folder (so int8 finds
    its training split for calibration)."""
    from unetseg import train

    root = tmp_path_factory.mktemp("engine")
    data = write_blob_dataset(root / "calls", {"train": 24, "valid": 6, "test": 6})
    result = train(Config.from_dict({
        "data": {"path": str(data), "size": [64, 64], "workers": 0},
        "model": {"arch": "classic", "depth": 3, "base_width": 8, "dropout": 0.0},
        "train": {"epochs": 5, "batch_size": 8, "lr": 3e-3, "runs_dir": str(root / "runs"), "progress": False,
                  "patience": 0},
    }))
    return result.best_model


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UNETSEG_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def rare_data(tmp_path: Path) -> Path:
    return write_rare_class_dataset(tmp_path / "rare")






@pytest.fixture
def camvid() -> Path:
    shared("camvid-mini")
    return EXAMPLES / "camvid-mini.yaml"


@pytest.fixture
def binary_data(tmp_path: Path) -> Path:
    return write_binary_dataset(tmp_path / "calls", {"train": 24, "valid": 6, "test": 6})
