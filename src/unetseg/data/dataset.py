"""The torch Dataset of (image, mask) pairs and the normalisation statistics of a split."""

from __future__ import annotations

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from unetseg.core.errors import UnetsegError
from unetseg.data.discover import Pair
from unetseg.data.images import IGNORE, MaskDecoder, read_image, read_instance_ids, read_mask_raw
from unetseg.data.inputspec import InputSpec
from unetseg.data.transforms import fit_image, fit_mask, normalize, plan_placement
from unetseg.instances.centres import centre_targets


class SegmentationDataset(Dataset):
    """Reads, fits, augments and normalises image/mask pairs; masks come back as uint8 indices. With
    ``instances``, each pair's instance IDs go through the same fitting, crop and flips as its mask and come
    back as centre targets: ``heat`` (1, H, W), ``edges`` (4, H, W) and ``centres`` (H, W) bool."""

    def __init__(self, pairs: list[Pair], decoder: MaskDecoder, spec: InputSpec,
                 augment: A.Compose | None = None, instances: bool = False) -> None:
        self.pairs, self.decoder, self.spec, self.augment = pairs, decoder, spec, augment
        self.instances = instances

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pair = self.pairs[index]
        image = read_image(pair.image, self.spec.channels)
        mask = self.decoder.decode(read_mask_raw(pair.mask), pair.mask)
        if image.shape[:2] != mask.shape:
            raise UnetsegError(f"{pair.image}: image is {image.shape[1]}x{image.shape[0]} but its mask "
                               f"{pair.mask.name} is {mask.shape[1]}x{mask.shape[0]} (width x height)")
        masks = [mask]
        if self.instances:
            if pair.instances is None:
                raise UnetsegError(f"{pair.image}: no instance-ID PNG, but the model learns instances")
            ids = read_instance_ids(pair.instances)
            if ids.shape != mask.shape:
                raise UnetsegError(f"{pair.instances}: instance IDs are {ids.shape[1]}x{ids.shape[0]} but the mask "
                                   f"{pair.mask.name} is {mask.shape[1]}x{mask.shape[0]} (width x height)")
            masks.append(ids)
        placement = plan_placement(image.shape[:2], self.spec.size, self.spec.mode, self.spec.divisor)
        image = fit_image(image, placement)
        masks = [fit_mask(m, placement, fill=IGNORE if i == 0 else 0) for i, m in enumerate(masks)]
        if self.augment is not None:
            out = self.augment(image=image, masks=masks)
            image, masks = out["image"], out["masks"]
            if image.ndim == 2:
                image = image[:, :, None]
        item = {
            "image": normalize(image, self.spec.mean, self.spec.std),
            "mask": torch.from_numpy(np.ascontiguousarray(masks[0])),
            "index": torch.tensor(index),
        }
        if self.instances:
            ids = np.where(masks[0] == IGNORE, 0, masks[1])  # padding the crop or rotation brought in
            heat, edges, centres = centre_targets(ids)
            item.update(heat=torch.from_numpy(heat[None]), edges=torch.from_numpy(edges),
                        centres=torch.from_numpy(centres))
        return item


def mean_std(pairs: list[Pair], channels: int, limit: int = 64) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation over up to ``limit`` evenly spaced images."""
    step = max(1, len(pairs) // limit)
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for pair in pairs[::step][:limit]:
        image = read_image(pair.image, channels).reshape(-1, channels).astype(np.float64)
        total += image.sum(0)
        squares += (image**2).sum(0)
        count += image.shape[0]
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 1e-12))
    return [round(float(v), 6) for v in mean], [round(float(max(v, 1e-3)), 6) for v in std]


class PadCollate:
    """Batch native-size (``resize_mode: pad``) samples of different sizes: each image is padded at the
    bottom and right to the batch's largest, as ``fit_image`` pads (black), and masks with ``IGNORE``, so
    padding counts in no loss or metric."""

    def __init__(self, spec: InputSpec) -> None:
        self.fill = torch.tensor([-m / s for m, s in zip(spec.mean, spec.std, strict=True)])

    def __call__(self, samples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        h = max(s["image"].shape[1] for s in samples)
        w = max(s["image"].shape[2] for s in samples)
        images = self.fill.view(1, -1, 1, 1).repeat(len(samples), 1, h, w)
        masks = torch.full((len(samples), h, w), IGNORE, dtype=samples[0]["mask"].dtype)
        out = {"image": images, "mask": masks, "index": torch.stack([s["index"] for s in samples])}
        for key in ("heat", "edges", "centres"):  # instance targets: zero (no instance) in the padding
            if key in samples[0]:
                shape = samples[0][key].shape[:-2]
                out[key] = torch.zeros((len(samples), *shape, h, w), dtype=samples[0][key].dtype)
        for i, s in enumerate(samples):
            _, sh, sw = s["image"].shape
            images[i, :, :sh, :sw] = s["image"]
            masks[i, :sh, :sw] = s["mask"]
            for key in ("heat", "edges", "centres"):
                if key in out:
                    out[key][i, ..., :sh, :sw] = s[key]
        return out
