"""A dataset's fingerprint: what the plan knows of it (sizes, channels, class shares, how many images hold
each class, object sizes), measured from the stats ``check_pairs`` took."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np

from unetseg.data.discover import DatasetInfo
from unetseg.data.images import read_mask_raw
from unetseg.data.stats import PairStats

RARE_PIXELS = 0.02  # a class below this share of labelled pixels is rare
SAMPLE_MASKS = 48  # masks read to measure object sizes


@dataclass
class Fingerprint:
    """What the plan knows of a dataset (train and valid splits)."""

    train_images: int
    valid_images: int
    channels: int
    size_median: tuple[int, int]
    size_min: tuple[int, int]
    size_max: tuple[int, int]
    classes: list[str]
    pixel_share: list[float]  # of labelled pixels, train + valid
    train_images_with: list[int]  # train images holding each class
    object_area_median: list[float | None]  # pixels per connected region, native resolution
    binary: bool
    spectrogram: bool
    presence: np.ndarray = field(repr=False)  # (train images, classes) bool

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("presence")
        return d

    @property
    def rare(self) -> list[int]:
        """Foreground classes below RARE_PIXELS of the labelled pixels (class 0 counts for binary data)."""
        return [c for c, share in enumerate(self.pixel_share) if share < RARE_PIXELS and share > 0]


def fingerprint(info: DatasetInfo, stats: PairStats, channels: int) -> Fingerprint:
    """Measure a dataset from the stats that ``check_pairs`` took of its train + valid pairs (train first)."""
    n_train = len(info.split("train"))
    sizes = np.asarray(stats.sizes)
    total = stats.total.astype(np.float64)
    share = (total / max(total.sum(), 1)).round(6).tolist()
    presence = stats.counts[:n_train] > 0
    return Fingerprint(
        train_images=n_train, valid_images=len(stats.sizes) - n_train, channels=channels,
        size_median=tuple(int(v) for v in np.median(sizes, 0)), size_min=tuple(int(v) for v in sizes.min(0)),
        size_max=tuple(int(v) for v in sizes.max(0)), classes=list(info.classes), pixel_share=share,
        train_images_with=presence.sum(0).astype(int).tolist(),
        object_area_median=_object_areas(info, n_train), binary=info.binary, spectrogram=bool(info.spectrogram),
        presence=presence,
    )


def _object_areas(info: DatasetInfo, n_train: int) -> list[float | None]:
    pairs = info.split("train")
    step = max(1, n_train // SAMPLE_MASKS)
    areas: list[list[int]] = [[] for _ in info.classes]
    for pair in pairs[::step][:SAMPLE_MASKS]:
        mask = info.decoder.decode(read_mask_raw(pair.mask), pair.mask)
        for c in np.unique(mask):
            if c >= len(info.classes):
                continue
            n, _, cc_stats, _ = cv2.connectedComponentsWithStats((mask == c).astype(np.uint8), connectivity=8)
            areas[c].extend(int(a) for a in cc_stats[1:n, cv2.CC_STAT_AREA])
    return [round(float(np.median(a)), 1) if a else None for a in areas]
