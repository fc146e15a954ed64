"""The inference engine: a model file loaded once, a backend, tiles and flips, probabilities out.

predict, evaluate, audio detect and the server are thin layers on it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from unetseg.core.budget import gib
from unetseg.core.errors import UnetsegError
from unetseg.core.threads import Prefetch
from unetseg.data.images import MaskDecoder, read_image, read_mask_raw
from unetseg.data.inputspec import InputSpec
from unetseg.data.transforms import normalize, prepare_input, restore
from unetseg.inference.backends import Backend, create_backend
from unetseg.inference.classes import activate, activate_, unflip
from unetseg.inference.footprint import MemoryGuard
from unetseg.inference.options import InferenceOptions
from unetseg.inference.windows import sliding_window
from unetseg.models.modelfile import LoadedModel

log = logging.getLogger(__name__)

# Peak memory per input pixel of a full-size image beside the network: decoding, the normalised and padded
# input, logits, probabilities, the class mask and its PNG. Measured (peak RSS growth of predict on a
# 4000x4000 image, binary tiny model, torch backend) at 113 bytes; each further class adds float32 logits,
# probabilities and blending weights.
FULL_SIZE_BYTES = 120
CLASS_BYTES = 16


class ImageDataset(Dataset):
    """Image files (and, for evaluation, their decoded masks) fitted and normalised for the network."""

    def __init__(self, images: list[Path], spec: InputSpec, masks: list[Path] | None = None,
                 decoder: MaskDecoder | None = None) -> None:
        self.images, self.spec, self.masks, self.decoder = images, spec, masks, decoder

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, Any]:
        image = read_image(self.images[i], self.spec.channels)
        fitted, placement = prepare_input(image, self.spec)
        item: dict[str, Any] = {"image": normalize(fitted, self.spec.mean, self.spec.std),
                                "placement": placement, "index": i}
        if self.masks is not None and self.decoder is not None:
            mask = self.decoder.decode(read_mask_raw(self.masks[i]), self.masks[i])
            if mask.shape != image.shape[:2]:
                raise UnetsegError(f"{self.images[i]}: image is {image.shape[1]}x{image.shape[0]} but its mask "
                                   f"{self.masks[i].name} is {mask.shape[1]}x{mask.shape[0]} (width x height)")
            item["mask"] = mask
        return item


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    out = {k: [it[k] for it in items] for k in items[0]}
    out["image"] = torch.stack(out["image"])
    return out


class Engine:
    """Loads a backend once for ``loaded`` and runs images or spectrogram windows through it.

    ``shape`` (N, C, H, W) is the batch the work will mostly use; ``auto`` probes backends at it.
    """

    def __init__(self, loaded: LoadedModel, options: InferenceOptions | None = None,
                 shape: tuple[int, int, int, int] | None = None) -> None:
        self.loaded, self.options = loaded, options or InferenceOptions()
        spec = loaded.input_spec
        if self.options.tile and self.options.tile % spec.divisor:
            raise UnetsegError(f"--tile {self.options.tile} is not divisible by the model's stride {spec.divisor}")
        given = shape is not None
        if shape is None:
            side = self.options.tile or (spec.size if spec.size else (spec.divisor * 16, spec.divisor * 16))
            size = (side, side) if isinstance(side, int) else tuple(side)
            shape = (self.options.batch_size, spec.channels, *size)
        self.guard = MemoryGuard(loaded.model, spec.channels, spec.divisor, self.options.max_memory,
                                 self.options.backend)
        if given:
            self._check_batch(shape)
        if spec.mode != "pad" and spec.size and not self.guard.fits(shape[0], *spec.size):
            need = self.guard.estimate(shape[0], *spec.size)
            raise UnetsegError(f"{loaded.path}: a batch of {shape[0]} at {spec.size[1]}x{spec.size[0]} needs about "
                               f"{gib(need)}, over the memory budget of {gib(self.guard.budget)}; lower --batch-size "
                               "or raise --max-memory")
        # auto ranks the backends at the batch the work runs (four alive at once must fit the memory budget)
        probe = shape[0]
        while probe > 1 and not self.guard.fits(4 * probe, shape[2], shape[3]):
            probe //= 2
        self.backend: Backend = create_backend(loaded, self.options, shape, (probe, *shape[1:]))
        self.guard.use(self.backend.name)  # from here on, the chosen backend's estimate (ONNX Runtime's arena)
        if given:
            self._check_batch(shape, self.backend.name)
        self._auto_tile: int | None = None

    def _check_batch(self, shape: tuple[int, ...], backend: str | None = None) -> None:
        """Refuse a given batch of ``shape`` (N, C, H, W) whose forward pass would not fit the budget, by the
        estimate of ``backend`` once it is chosen."""
        n, _, h, w = shape
        if self.guard.fits(n, h, w):
            return
        advice = "raise --max-memory, or choose another --backend" if backend else "or raise --max-memory"
        raise UnetsegError(f"{self.loaded.path}: a batch of {n} at {w}x{h} needs about "
                           f"{gib(self.guard.estimate(n, h, w))}{f' with {backend}' if backend else ''}, over the "
                           f"memory budget of {gib(self.guard.budget)}; lower --batch-size or --window, {advice}")

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def describe(self) -> dict[str, Any]:
        """What ran: the options, the backend chosen, the model's digest (saved beside outputs)."""
        return {"options": self.options.to_dict(), "backend": self.backend_name, "model": str(self.loaded.path),
                "model_sha256": self.loaded.digest}

    # ------------------------------------------------------------------------------------------- images

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Network logits of normalised (N, C, H, W) input: tiled and flip-averaged as configured."""
        o = self.options
        tile = o.tile or self._tile_for(x)

        def once(t: torch.Tensor) -> torch.Tensor:
            if tile and max(t.shape[2:]) > tile:
                return sliding_window(self.backend, t, tile, o.tile_overlap, o.blend)
            return self.backend(t).float()

        out = once(x)
        if o.tta:
            head = self.loaded.outputs if self.loaded.head else None
            out = (out + unflip(once(x.flip(3)), 3, head) + unflip(once(x.flip(2)), 2, head)) / 3
        return out

    def _tile_for(self, x: torch.Tensor) -> int | None:
        """None when the whole input fits the memory budget, else the tile that does (said once)."""
        n, _, h, w = x.shape
        if self.guard.fits(n, h, w):
            return None
        tile = self.guard.tile(n)
        if tile is None:
            raise UnetsegError(f"{self.loaded.path}: not even one tile fits the memory budget of "
                               f"{gib(self.guard.budget)}; raise --max-memory")
        if tile != self._auto_tile:
            log.info("%dx%d input needs about %s, over the memory budget of %s (--max-memory): predicting in "
                     "tiles of %d px", w, h, gib(self.guard.estimate(n, h, w)), gib(self.guard.budget), tile)
            self._auto_tile = tile
        return tile

    def loader(self, dataset: Dataset) -> DataLoader:
        # Native-size (pad) inputs differ in shape, so they go one at a time.
        one = self.loaded.input_spec.mode == "pad" or self.options.tile
        return DataLoader(dataset, batch_size=1 if one else self.options.batch_size,
                          num_workers=self.options.workers, collate_fn=_collate)

    @torch.inference_mode()
    def image_bytes(self, height: int, width: int, outputs_per_pixel: float = 0.0) -> int:
        """Memory one image of ``height`` x ``width`` takes through the engine: its decoding, full-size
        probabilities and outputs (``outputs_per_pixel`` bytes more), beside the forward pass of one tile."""
        return self.pixel_bytes(height, width, outputs_per_pixel) + self._tile_bytes()

    def _tile_bytes(self) -> int:
        """The forward pass of one tile (the given tile, the largest that fits, or one stride)."""
        side = self.options.tile or self.guard.tile() or self.guard.divisor
        return self.guard.estimate(1, side, side)

    def pixel_bytes(self, height: int, width: int, outputs_per_pixel: float = 0.0) -> int:
        """``image_bytes`` less the forward pass: what one more image held ahead or behind the model costs."""
        classes = 1 if self.loaded.binary else len(self.loaded.classes)
        per_pixel = FULL_SIZE_BYTES + CLASS_BYTES * (classes - 1) + outputs_per_pixel
        return int(height * width * per_pixel)

    def check_sizes(self, images: list[Path], outputs_per_pixel: float = 0.0) -> int:
        """Refuse, from the headers and before any work, an image whose decoding, full-size probabilities and
        outputs (``outputs_per_pixel`` bytes more: overlays, figures) would not fit the memory budget beside
        the forward pass (which tiles when it must); the most any one image's pixels need (``pixel_bytes``)."""
        from unetseg.data.images import read_header

        most, tile = 0, self._tile_bytes()  # the tile's forward pass once, not per image
        for path in images:
            header = read_header(path)
            pixels = self.pixel_bytes(header.height, header.width, outputs_per_pixel)
            if pixels + tile > self.guard.budget:
                raise UnetsegError(f"{path}: a {header.width}x{header.height} image needs about {gib(pixels + tile)} "
                                   f"for its pixels, probabilities and outputs, over the memory budget of "
                                   f"{gib(self.guard.budget)} (--max-memory); cut it into smaller images")
            most = max(most, pixels)
        return most

    def run(self, dataset: Dataset, read_ahead: bool = False) -> Iterator[tuple[dict[str, Any], torch.Tensor]]:
        """Yield (item, class probabilities (C, H, W) at the image's original size) for each image, in order;
        a model with the instance head adds ``item["head"]``: (5, H, W) heat and edge distances in the
        image's own pixels."""
        batches = self.loader(dataset)
        # ``read_ahead`` (with no reading processes): the next batches are read and decoded in a thread while
        # the model runs this one
        for batch in Prefetch(batches) if read_ahead and self.options.workers == 0 else batches:
            logits = self.logits(batch["image"])
            for j in range(logits.shape[0]):
                probs, head = self._activated(logits[j], batch["placement"][j])
                item = {k: v[j] for k, v in batch.items() if k != "image"}
                if head is not None:
                    item["head"] = head
                yield item, probs

    def _activated(self, logits: torch.Tensor, placement: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One image's logits -> class probabilities at its original size, and the instance head's maps (heat,
        edge distances in the image's own pixels) when the model has the head."""
        loaded = self.loaded
        probs = activate(restore(logits, placement), loaded.binary, axis=0, head=loaded.head)
        if not loaded.head:
            return probs.cpu(), None
        sy, sx = placement.orig[0] / placement.scaled[0], placement.orig[1] / placement.scaled[1]
        head = probs[loaded.outputs:].cpu() * torch.tensor([1.0, sx, sy, sx, sy]).view(-1, 1, 1)
        return probs[:loaded.outputs].cpu(), head

    @torch.inference_mode()
    def probabilities(self, images: list[np.ndarray], head: bool = False) -> list[torch.Tensor]:
        """Class probabilities (C, H, W) of in-memory float images (H, W, C) in [0, 1], in one batch; with
        ``head`` a model with the instance head adds its five maps after the class maps (as ``run``'s)."""
        spec = self.loaded.input_spec
        prepared = [prepare_input(img, spec) for img in images]
        x = torch.stack([normalize(fitted, spec.mean, spec.std) for fitted, _ in prepared])
        logits = self.logits(x)
        out = [self._activated(logits[j], p) for j, (_, p) in enumerate(prepared)]
        return [torch.cat([probs, maps]) if head and maps is not None else probs for probs, maps in out]

    # ---------------------------------------------------------------------------------------- windows

    @torch.inference_mode()
    def native(self, pixels: np.ndarray) -> np.ndarray:
        """Probabilities (N, C', H, W) of uint8 (N, H, W) single-channel images at their own size (no
        resizing: spectrogram windows), padded to the model's stride and cropped back; a model with the instance
        head adds its five maps (heat, edge distances) after the class maps."""
        spec = self.loaded.input_spec
        n, h, w = pixels.shape
        d = spec.divisor
        ph, pw = -(-h // d) * d, -(-w // d) * d
        x = (pixels.astype(np.float32) / 255 - np.float32(spec.mean[0])) / np.float32(spec.std[0])
        if (ph, pw) != (h, w):
            x = np.pad(x, ((0, 0), (0, ph - h), (0, pw - w)), constant_values=float(-spec.mean[0] / spec.std[0]))
        logits = self.backend(torch.from_numpy(np.ascontiguousarray(x[:, None])))
        # the backend's logits are this call's own: activated in place (the bf16 backend's are a float32 copy)
        return activate_(logits[:, :, :h, :w].float(), self.loaded.binary, axis=1, head=self.loaded.head).cpu().numpy()
