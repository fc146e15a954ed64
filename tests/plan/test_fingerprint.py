"""Tests of ``unetseg.plan.fingerprint``."""

from __future__ import annotations

from pathlib import Path

from unetseg.data.discover import load_dataset
from unetseg.data.stats import check_pairs
from unetseg.plan import fingerprint, median_frequency_weights, sample_weights


def test_fingerprint_finds_the_rare_class(rare_data: Path) -> None:
    info = load_dataset(rare_data)
    stats = check_pairs(info.split("train") + info.split("valid"), info.decoder)
    fp = fingerprint(info, stats, 3)
    assert (fp.train_images, fp.valid_images, fp.channels) == (12, 4, 3)
    assert fp.size_median == fp.size_max == (64, 64)
    assert fp.train_images_with == [12, 12, 3]
    assert fp.rare == [2] and fp.classes[2] == "sign"
    assert fp.object_area_median[2] == 25.0
    weights = sample_weights(fp.presence, fp.pixel_share)
    holding = fp.presence[:, 2]
    assert weights[holding].min() > 2 * weights[~holding].max()  # rare-class images drawn more often
    assert abs(weights.sum() - 1) < 1e-9


def test_median_frequency_weights() -> None:
    assert median_frequency_weights([0.5, 0.3, 0.2]) == [0.6, 1.0, 1.5]
    assert median_frequency_weights([0.9, 0.0999, 0.0001]) == [0.2, 1.0, 10.0]  # clipped
    assert median_frequency_weights([0.5, 0.5, 0.0])[2] == 1.0  # absent class
