"""Model factory, encoder weights, and the model file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from unetseg.core.errors import UnetsegError
from unetseg.data.inputspec import InputSpec
from unetseg.models import UNet, create_model, load_encoder_weights
from unetseg.models.modelfile import build_meta, load_model, read_meta, save_model_file

CLASSIC = {"arch": "classic", "encoder": "", "encoder_weights": None, "depth": 3, "base_width": 8,
           "batch_norm": True, "dropout": 0.1, "attention": False}


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


def _meta(model_cfg: dict) -> dict:
    spec = InputSpec(1, (64, 64), "resize", 8, (0.5,), (0.25,))
    return build_meta(model_cfg, ["background", "call"], True, [(0, 0, 0), (255, 0, 0)], spec, 0.4)


def test_model_file_round_trip(tmp_path: Path) -> None:
    model = create_model(CLASSIC, 1, 1).eval()
    path = save_model_file(tmp_path / "m.safetensors", model, _meta(CLASSIC))
    loaded = load_model(path)
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(model(x), loaded.model(x))
    assert loaded.classes == ["background", "call"] and loaded.binary and loaded.threshold == 0.4
    assert loaded.input_spec == InputSpec(1, (64, 64), "resize", 8, (0.5,), (0.25,))
    assert not list(tmp_path.glob(".*tmp*")), "temporary file left behind"


def test_foreign_files_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(UnetsegError, match=r"junk\.safetensors: not a unetseg model file"):
        load_model(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UnetsegError, match="safetensors without unetseg metadata"):
        read_meta(tmp_path / "other.safetensors")
    torch.save({"w": torch.zeros(2)}, tmp_path / "model.pt")
    with pytest.raises(UnetsegError, match=r"model\.pt: not a unetseg model file"):
        load_model(tmp_path / "model.pt")
    with pytest.raises(UnetsegError, match="model file not found"):
        load_model(tmp_path / "absent.safetensors")
