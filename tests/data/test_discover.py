"""Tests of ``unetseg.data.discover``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from unetseg.core.errors import UnetsegError
from unetseg.data.discover import load_dataset, pair_files
from unetseg.data.images import IGNORE, MaskDecoder, read_mask_raw
from unetseg.data.stats import check_pairs


def _touch_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_pairs_by_stem_whatever_the_extension(tmp_path: Path) -> None:
    img, msk = tmp_path / "images", tmp_path / "masks"
    # Sorted by full name, images and masks would pair b<->a; stems must win.
    img.mkdir()
    cv2.imwrite(str(img / "b.jpg"), np.zeros((4, 4, 3), np.uint8))
    _touch_png(img / "a.png", np.zeros((4, 4), np.uint8))
    _touch_png(msk / "a_mask.png", np.zeros((4, 4), np.uint8))
    _touch_png(msk / "b_mask.png", np.zeros((4, 4), np.uint8))
    pairs = pair_files(img, msk, mask_suffix="_mask")
    assert [(p.image.name, p.mask.name) for p in pairs] == [("a.png", "a_mask.png"), ("b.jpg", "b_mask.png")]


@pytest.mark.parametrize("lonely", ["image", "mask"])
def test_unpaired_files_are_named(tmp_path: Path, lonely: str) -> None:
    img, msk = tmp_path / "images", tmp_path / "masks"
    _touch_png(img / "a.png", np.zeros((4, 4), np.uint8))
    _touch_png(msk / "a.png", np.zeros((4, 4), np.uint8))
    extra = img / "orphan.png" if lonely == "image" else msk / "orphan.png"
    _touch_png(extra, np.zeros((4, 4), np.uint8))
    with pytest.raises(UnetsegError, match=r"orphan\.png: has no (mask|image)"):
        pair_files(img, msk)
    assert len(pair_files(img, msk, allow_unpaired=True)) == 1


def test_folder_layout_with_val_alias_and_binary_inference(tmp_path: Path) -> None:
    for split in ("train", "val"):
        for i in range(3):
            _touch_png(tmp_path / split / "images" / f"{i}.png", np.zeros((8, 8), np.uint8))
            _touch_png(tmp_path / split / "masks" / f"{i}.png", np.full((8, 8), 255 * (i % 2), np.uint8))
    info = load_dataset(tmp_path)
    assert info.binary and info.classes == ["background", "foreground"]
    assert len(info.split("train")) == 3 and len(info.split("valid")) == 3
    with pytest.raises(UnetsegError, match="split 'test' is empty"):
        info.split("test")


def test_train_only_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    for i in range(20):
        _touch_png(tmp_path / "images" / f"{i:02d}.png", np.zeros((4, 4), np.uint8))
        _touch_png(tmp_path / "masks" / f"{i:02d}.png", np.zeros((4, 4), np.uint8))
    a = load_dataset(tmp_path, seed=3, val_fraction=0.2, test_fraction=0.1)
    b = load_dataset(tmp_path, seed=3, val_fraction=0.2, test_fraction=0.1)
    c = load_dataset(tmp_path, seed=4, val_fraction=0.2, test_fraction=0.1)
    sizes = {s: len(p) for s, p in a.splits.items()}
    assert sizes == {"train": 14, "valid": 4, "test": 2}
    assert a.splits == b.splits and a.splits["valid"] != c.splits["valid"]
    stems = [p.image.stem for s in a.splits.values() for p in s]
    assert len(stems) == len(set(stems)) == 20


def test_size_mismatch_is_reported(tmp_path: Path) -> None:
    _touch_png(tmp_path / "images" / "a.png", np.zeros((8, 8), np.uint8))
    _touch_png(tmp_path / "masks" / "a.png", np.zeros((8, 6), np.uint8))
    pairs = pair_files(tmp_path / "images", tmp_path / "masks")
    with pytest.raises(UnetsegError, match=r"a\.png: image is 8x8 but its mask a\.png is 6x8"):
        check_pairs(pairs, MaskDecoder("binary", 2))


def test_camvid_loads_through_its_yaml(camvid: Path) -> None:
    info = load_dataset(camvid)
    assert {s: len(p) for s, p in info.splits.items()} == {"train": 120, "valid": 40, "test": 40}
    assert info.num_classes == 11 and not info.binary
    pair = info.split("train")[0]
    assert pair.image.name == pair.mask.name
    raw = read_mask_raw(pair.mask)
    decoded = info.decoder.decode(raw, pair.mask)
    assert ((raw == 11) == (decoded == IGNORE)).all()
    assert decoded[raw != 11].max() <= 10
