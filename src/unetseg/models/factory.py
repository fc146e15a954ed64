"""One factory over our classic U-Net and every segmentation_models_pytorch architecture."""

from __future__ import annotations

import logging
import math
import os
import socket
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unetseg.core.errors import UnetsegError
from unetseg.instances.centres import HEAD_CHANNELS, HEAT_PRIOR, has_head
from unetseg.models.unet import UNet

log = logging.getLogger(__name__)

CLASSIC = "classic"


def smp_architectures() -> dict[str, type]:
    import segmentation_models_pytorch as smp

    return {name.lower(): cls for name, cls in smp.MODEL_ARCHITECTURES_MAPPING.items()}


def output_stride(model_cfg: dict[str, Any]) -> int:
    """The factor the input size must divide by."""
    if model_cfg["arch"] == CLASSIC:
        return 2 ** int(model_cfg["depth"])
    return 32


MAX_CHANNELS = 4096  # bottleneck width of the classic U-Net: base width x 2^depth (the default: 32 x 16 = 512)


class BandNorm(nn.Module):
    """``input_norm: band``: each input row less its mean over the window's width, then the network. On a
    spectrogram (dB) every frequency band is measured against its own background level."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> Any:
        return self.net(x - x.mean(dim=-1, keepdim=True))


def create_model(model_cfg: dict[str, Any], in_channels: int, outputs: int) -> nn.Module:
    """Build an untrained model of ``outputs`` class maps (and, with ``instances: on``, the instance head's
    channels after them); ``model_cfg`` holds the fields of ``ModelConfig``.

    Encoder weights are not loaded here (see ``load_encoder_weights``), so a model file always
    rebuilds without touching the network.
    """
    model = _create_with_head(model_cfg, in_channels, outputs)
    return BandNorm(model) if model_cfg.get("input_norm", "none") == "band" else model


def _create_with_head(model_cfg: dict[str, Any], in_channels: int, outputs: int) -> nn.Module:
    if not has_head(model_cfg):
        return _create(model_cfg, in_channels, outputs)
    # The head's channels come from the model's own last layer, after the class maps: a separate branch
    # (CenterNet's 3x3 conv, ReLU, 1x1 conv) made a width-8 U-Net's detect 1.75x slower (measured:
    # benchmarks/instances.py --parts speed), its full-resolution layers bound by memory.
    model = _create(model_cfg, in_channels, outputs + HEAD_CHANNELS)
    last = [m for m in model.modules() if isinstance(m, nn.Conv2d)][-1]
    if last.bias is not None and last.out_channels == outputs + HEAD_CHANNELS:
        with torch.no_grad():  # the heatmap starts at its prior (CenterNet's -2.19 for 0.1)
            last.bias[outputs] = math.log(HEAT_PRIOR / (1 - HEAT_PRIOR))
    return model


def _create(model_cfg: dict[str, Any], in_channels: int, outputs: int) -> nn.Module:
    arch = str(model_cfg["arch"]).lower()
    if arch == CLASSIC:
        widest = int(model_cfg["base_width"]) * 2 ** int(model_cfg["depth"])
        if widest > MAX_CHANNELS:
            raise UnetsegError(f"classic U-Net of base width {model_cfg['base_width']} and depth {model_cfg['depth']} "
                               f"would have {widest} channels at its bottleneck (at most {MAX_CHANNELS})")
        return UNet(in_channels, outputs, depth=int(model_cfg["depth"]), base_width=int(model_cfg["base_width"]),
                    batch_norm=bool(model_cfg["batch_norm"]), dropout=float(model_cfg["dropout"]),
                    attention=bool(model_cfg["attention"]))
    import segmentation_models_pytorch as smp

    archs = smp_architectures()
    if arch not in archs:
        raise UnetsegError(f"unknown architecture {model_cfg['arch']!r}; choose {CLASSIC} or one of "
                           f"{', '.join(sorted(archs))}")
    encoder = str(model_cfg["encoder"])
    if encoder not in smp.encoders.get_encoder_names():
        raise UnetsegError(f"unknown encoder {encoder!r}; see segmentation_models_pytorch's encoder list "
                           "(e.g. resnet34, efficientnet-b3, mobilenet_v2, tu-convnext_tiny)")
    try:
        return smp.create_model(arch, encoder_name=encoder, encoder_weights=None, in_channels=in_channels,
                                classes=outputs)
    except (ValueError, KeyError, AssertionError) as e:
        raise UnetsegError(f"cannot build {arch} with encoder {encoder}: {' '.join(str(e).split())}") from e


def load_encoder_weights(model: nn.Module, model_cfg: dict[str, Any], in_channels: int) -> None:
    """Load pretrained encoder weights: a local file, or ``imagenet`` from the hub when reachable."""
    source = model_cfg.get("encoder_weights")
    if not source or str(source).lower() == "none":
        return
    if model_cfg["arch"] == CLASSIC:
        raise UnetsegError("encoder weights apply to segmentation_models_pytorch encoders, not the classic U-Net")
    encoder = getattr(model, "net", model).encoder  # under a BandNorm, the network is .net
    path = Path(str(source)).expanduser()
    if path.is_file():
        state = _read_state_dict(path)
        own = encoder.state_dict()
        state = {k.removeprefix("encoder."): v for k, v in state.items()}
        matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not matched:
            raise UnetsegError(f"{path}: no tensor names and shapes match encoder {model_cfg['encoder']}")
        missing = [k for k in own if k not in matched]
        if missing:
            log.warning("%s: %d of %d encoder tensors not in the file (first: %s)", path, len(missing), len(own),
                        missing[0])
        encoder.load_state_dict({**own, **matched})
        return
    if path.suffix or os.sep in str(source):
        raise UnetsegError(f"{source}: encoder weights file not found")
    # Otherwise a named set of smp's (imagenet, ssl, advprop, ...), fetched from the hub.
    _check_hub_reachable(str(source), str(model_cfg["encoder"]))
    import segmentation_models_pytorch as smp

    try:
        pretrained = smp.encoders.get_encoder(str(model_cfg["encoder"]), in_channels=in_channels, depth=5,
                                              weights=str(source))
    except Exception as e:  # the hub raises many types; all mean "not available here"
        raise UnetsegError(f"encoder weights {source!r} for {model_cfg['encoder']} unavailable "
                           f"({type(e).__name__}); pass a local file with --encoder-weights PATH") from e
    encoder.load_state_dict(pretrained.state_dict(), strict=False)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UnetsegError(f"{path}: not a readable weights file ({type(e).__name__})") from e
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UnetsegError(f"{path}: expected a state dict of tensors")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _check_hub_reachable(weights: str, encoder: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not after the hub's long retries, when weights would need the network."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return  # the hub library fails fast offline; only its local cache is tried
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
    except OSError as e:
        raise UnetsegError(
            f"encoder weights {weights!r} for {encoder} need huggingface.co, which is unreachable ({e}); "
            "pass a local file with --encoder-weights PATH, or set HF_HUB_OFFLINE=1 to use a cached copy"
        ) from e
