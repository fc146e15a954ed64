"""Shared fixtures: tiny generated datasets and the real data in ../shared/data."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Exported graphs and backend probes go to a fresh cache per test session, not the user's.
os.environ.setdefault("UNETSEG_CACHE", tempfile.mkdtemp(prefix="unetseg-cache-"))

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def shared(name: str) -> Path:
    """A folder of ../shared/data; missing data fails under CI and skips elsewhere."""
    path = SHARED_DATA / name
    if not path.exists():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{path} is missing; CI must provide ../shared/data")
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture
def camvid() -> Path:
    shared("camvid-mini")
    return EXAMPLES / "camvid-mini.yaml"


def write_binary_dataset(root: Path, counts: dict[str, int], size: int = 64, seed: int = 0) -> Path:
    """A folder dataset of synthetic tonal-call spectrograms with 0/255 masks."""
    from unetseg.core.fileio import write_png
    from unetseg.data.demo import tonal_call_image

    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        for i in range(n):
            image, mask = tonal_call_image(rng, size, size)
            write_png(root / split / "images" / f"{split}{i}.png", image)
            write_png(root / split / "masks" / f"{split}{i}.png", mask * 255)
    return root


@pytest.fixture
def binary_data(tmp_path: Path) -> Path:
    return write_binary_dataset(tmp_path / "calls", {"train": 24, "valid": 6, "test": 6})
