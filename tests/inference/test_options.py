"""Tests of ``unetseg.inference.options``."""

from __future__ import annotations

import pytest
import torch

from unetseg.core.errors import UnetsegError
from unetseg.inference import InferenceOptions
from unetseg.inference import backends as backends_module


def test_bad_inference_options_are_one_line_errors() -> None:
    for bad, needle in ((dict(backend="tpu"), "--backend: .tpu. is not one of"), (dict(batch_size=0), "--batch-size"),
                        (dict(threads=0), "--threads"), (dict(tile_overlap=1.0), "--tile-overlap"),
                        (dict(tile=-16), "--tile")):
        with pytest.raises(UnetsegError, match=needle):
            InferenceOptions(**bad)
    if not torch.cuda.is_available():
        with pytest.raises(UnetsegError, match="no CUDA GPU"):
            backends_module.resolve_device("cuda")
