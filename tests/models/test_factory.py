"""Tests of ``unetseg.models.factory``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.fixtures import CLASSIC
from unetseg.core.errors import UnetsegError
from unetseg.models import UNet, create_model, load_encoder_weights


def smp_cfg(arch: str, encoder: str, weights: str | None = None) -> dict:
    return {**CLASSIC, "arch": arch, "encoder": encoder, "encoder_weights": weights}


@pytest.mark.parametrize("attention", [False, True])
def test_classic_unet_shapes(attention: bool) -> None:
    model = UNet(in_channels=1, classes=3, depth=3, base_width=8, dropout=0.1, attention=attention).eval()
    assert model(torch.zeros(2, 1, 48, 64)).shape == (2, 3, 48, 64)


@pytest.mark.parametrize("arch,encoder", [("unet", "efficientnet-b3"), ("deeplabv3plus", "resnet18"),
                                          ("unetplusplus", "mobilenet_v2")])
def test_smp_architectures_build_offline(arch: str, encoder: str) -> None:
    model = create_model(smp_cfg(arch, encoder), in_channels=1, outputs=2).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)


def test_unknown_names_are_clear_errors() -> None:
    with pytest.raises(UnetsegError, match="unknown architecture 'unetz'; choose classic or one of"):
        create_model(smp_cfg("unetz", "resnet18"), 3, 1)
    with pytest.raises(UnetsegError, match="unknown encoder 'resnet-9000'"):
        create_model(smp_cfg("unet", "resnet-9000"), 3, 1)


def test_imagenet_offline_fails_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = smp_cfg("unet", "resnet18", "imagenet")
    model = create_model(cfg, 3, 1)
    start = time.monotonic()
    with pytest.raises(UnetsegError, match="encoder weights 'imagenet' for resnet18 unavailable.*--encoder-weights"):
        load_encoder_weights(model, cfg, 3)
    assert time.monotonic() - start < 15


def test_encoder_weights_from_a_local_file(tmp_path: Path) -> None:
    source = create_model(smp_cfg("unet", "resnet18"), 3, 1)
    save_file({k: v.contiguous() for k, v in source.encoder.state_dict().items()}, str(tmp_path / "enc.safetensors"))
    cfg = smp_cfg("unet", "resnet18", str(tmp_path / "enc.safetensors"))
    target = create_model(cfg, 3, 1)
    load_encoder_weights(target, cfg, 3)
    for (name, a), b in zip(source.encoder.state_dict().items(), target.encoder.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    with pytest.raises(UnetsegError, match="encoder weights file not found"):
        load_encoder_weights(target, smp_cfg("unet", "resnet18", str(tmp_path / "missing.pth")), 3)


def test_band_norm_hears_every_band_against_its_own_level() -> None:
    """``input_norm: band``: a level added to any row (a louder band, another gain in dB) changes nothing."""
    from unetseg.core.config import Config
    from unetseg.models.factory import BandNorm

    torch.manual_seed(0)
    model = create_model(vars(Config().model) | CLASSIC | {"input_norm": "band"}, 1, 1).eval()
    assert isinstance(model, BandNorm) and list(model.state_dict()) == \
        ["net." + k for k in create_model(vars(Config().model) | CLASSIC, 1, 1).state_dict()]
    x = torch.rand(2, 1, 32, 64)
    levels = torch.randn(2, 1, 32, 1) * 3  # each row (band) of each image its own offset
    with torch.no_grad():
        assert torch.allclose(model(x), model(x + levels), atol=1e-5)
        assert not torch.allclose(model(x), model(x + torch.randn(2, 1, 32, 64)), atol=1e-3)
