"""Checking a dataset's pairs before training: every mask decoded and sized against its image, with the
pixels of each class, image sizes and channels measured on the way (the plan's fingerprint uses them)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from unetseg.core.errors import UnetsegError
from unetseg.data.discover import Pair
from unetseg.data.images import MaskDecoder, read_header, read_mask_raw

log = logging.getLogger(__name__)


@dataclass
class PairStats:
    """What checking a list of pairs measured: pixels of each class per pair, image sizes (h, w) and channels."""

    counts: np.ndarray  # (pairs, classes) int64
    sizes: list[tuple[int, int]]
    channels: list[int] = field(default_factory=list)

    @property
    def total(self) -> np.ndarray:
        return self.counts.sum(0)

    def input_channels(self, source: str | Path) -> int:
        """3 when any image is colour (grey ones are repeated into RGB, with a warning), else 1."""
        if len(set(self.channels)) > 1:
            log.warning("%s: %d grey and %d colour images; grey ones are read as RGB", source,
                        self.channels.count(1), self.channels.count(3))
        return max(self.channels, default=3)


def check_pairs(pairs: list[Pair], decoder: MaskDecoder) -> PairStats:
    """Decode every mask and compare sizes with its image; return pixel counts per class of each pair.

    Fails on the first bad pair with a one-line error, before any training starts.
    """
    counts = np.zeros((len(pairs), decoder.num_classes), dtype=np.int64)
    sizes, channels = [], []
    snapped = 0
    for i, pair in enumerate(pairs):
        raw = read_mask_raw(pair.mask)
        mask = decoder.decode(raw, pair.mask)
        if decoder.snap:
            snapped += int(((raw != 0) & (raw != 255)).sum())
        header = read_header(pair.image)
        size = (header.height, header.width)
        if size != mask.shape[:2]:
            raise UnetsegError(f"{pair.image}: image is {size[1]}x{size[0]} but its mask {pair.mask.name} is "
                               f"{mask.shape[1]}x{mask.shape[0]} (width x height, as displayed)")
        counts[i] = np.bincount(mask[mask != 255].ravel(), minlength=decoder.num_classes)[: decoder.num_classes]
        sizes.append((int(size[0]), int(size[1])))
        channels.append(header.channels)
    if snapped:
        log.warning("%s: masks saved as JPEG (lossy): %d pixels (%.2f%%) snapped to 0 or 255; save masks as PNG",
                    pairs[0].mask.parent, snapped, 100 * snapped / max(1, sum(h * w for h, w in sizes)))
    return PairStats(counts, sizes, channels)
