"""Tests of ``unetseg.training.callbacks``."""

from __future__ import annotations

import numpy as np
import pytest

from unetseg.core.config import Config
from unetseg.training import WarmupCosine


def test_warmup_cosine_shape() -> None:
    t = Config().train
    schedule = WarmupCosine(None, t)  # type: ignore[arg-type]
    values = [schedule.factor(p) for p in np.linspace(0, 1, 101)]
    peak = int(np.argmax(values))
    assert values[0] == pytest.approx(0.01) and values[-1] == pytest.approx(0.01)
    assert values[peak] == pytest.approx(1.0) and peak == round(t.warmup * 100)
    assert all(np.diff(values[:peak + 1]) > 0) and all(np.diff(values[peak:]) <= 0)
