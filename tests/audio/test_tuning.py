"""Tests of ``unetseg.audio.tuning``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.fixtures import yaml_load
from unetseg.cli import main


def test_tuning_recovers_settings_that_reproduce_the_reference(finch_model: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With probabilities equal to the validation masks, the tuned settings give onset/offset F1 1.0 (the
    engine must see each window's pixels as written: a lookup by the exact pixels)."""
    from unetseg.audio.tuning import tune_time_events
    from unetseg.data.discover import load_dataset
    from unetseg.data.images import read_image, read_mask_raw
    from unetseg.inference import Engine

    info = load_dataset(finch_model.parents[3] / "data")
    truth = {}
    for pair in info.split("valid"):
        pixels = np.round(read_image(pair.image, 1)[:, :, 0] * 255).astype(np.uint8)
        truth[pixels.tobytes()] = info.decoder.decode(read_mask_raw(pair.mask), pair.mask)

    def native(self: Engine, pixels: np.ndarray) -> np.ndarray:
        return np.stack([truth[p.tobytes()][None].astype(np.float32) * 0.8 + 0.1 for p in pixels])

    monkeypatch.setattr(Engine, "native", native)
    tuned = tune_time_events(finch_model, info)
    assert tuned is not None and tuned["f1"] == 1.0 and tuned["reference_events"] > 20


@pytest.mark.slow
@pytest.mark.parametrize("instances", ["off", "on"])
def test_box_annotated_model_tunes_its_granularity(birds: Path, tmp_path: Path, instances: str) -> None:
    """Without the head: threshold and granularity of region decoding; with it: the peak threshold."""
    from unetseg.audio.detect import Detector
    from unetseg.audio.settings import GRANULARITY
    from unetseg.models.modelfile import load_model

    spinetail = birds / "spinetail"
    assert main(["audio", "dataset", "--audio", str(spinetail / "spinetail.wav"), "--annotations",
                 str(spinetail / "spinetail.txt"), "--output", str(tmp_path / "sp")]) == 0
    assert yaml_load(tmp_path / "sp" / "dataset.yaml")["events"] == "box"
    assert main(["train", "--data", str(tmp_path / "sp"), "--epochs", "1", "--base-width", "8", "--depth", "2",
                 "--no-progress", "--workers", "0", "--runs-dir", str(tmp_path / "runs"), "--name", "sp",
                 "--no-test", "--instances", instances]) == 0
    model = load_model(tmp_path / "runs" / "sp" / "weights" / "best.safetensors")
    tuned = model.meta["detect"]
    assert model.head == (instances == "on") and ("peak_threshold" in tuned) == model.head
    assert tuned["granularity"] in GRANULARITY and tuned["metric"] == "box F1 (IoU >= 0.3)"
    assert tuned["reference_events"] > 0 and 0 <= tuned["f1"] <= 1
    detector = Detector(model)
    assert not detector.columns and detector.events.granularity == tuned["granularity"]
    assert detector.threshold == tuned["threshold"]
    assert detector.describe()["decoding"] == ("instances" if model.head else "regions")
    if model.head:
        assert detector.events.peak_threshold == tuned["peak_threshold"]
