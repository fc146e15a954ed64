"""Dataset discovery, pairing, mask decoding, image reading, splits and geometry."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from unetseg.core.errors import UnetsegError
from unetseg.data.discover import load_dataset, pair_files
from unetseg.data.images import IGNORE, MaskDecoder, read_image, read_mask_raw
from unetseg.data.stats import check_pairs
from unetseg.data.transforms import check_size, fit_image, fit_mask, plan_placement, restore


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


def test_mask_decoding_binary_index_palette_and_ignore() -> None:
    binary = MaskDecoder("binary", 2)
    assert binary.decode(np.array([[0, 255]], np.uint8)).tolist() == [[0, 1]]
    assert binary.decode(np.array([[0, 1]], np.uint8)).tolist() == [[0, 1]]
    with pytest.raises(UnetsegError, match=r"m\.png: mask values \[7\] outside the classes"):
        binary.decode(np.array([[0, 7]], np.uint8), "m.png")
    index = MaskDecoder("index", 3, ignore_value=11)
    assert index.decode(np.array([[0, 2, 11]], np.uint8)).tolist() == [[0, 2, IGNORE]]
    with pytest.raises(UnetsegError, match=r"values \[5\] outside"):
        index.decode(np.array([[5]], np.uint8))
    palette = MaskDecoder("palette", 2, palette=((0, 0, 0), (255, 0, 0)))
    rgb = np.array([[[0, 0, 0], [255, 0, 0]]], np.uint8)
    assert palette.decode(rgb).tolist() == [[0, 1]]
    with pytest.raises(UnetsegError, match=r"colour \(1, 2, 3\) at \(0, 0\) is not in the palette"):
        palette.decode(np.array([[[1, 2, 3]]], np.uint8))


def test_indexed_png_keeps_indices(tmp_path: Path) -> None:
    img = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    img.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10] + [0] * 759)
    img.save(tmp_path / "m.png")
    assert read_mask_raw(tmp_path / "m.png").tolist() == [[0, 1], [2, 1]]


def test_read_image_depths_and_channels(tmp_path: Path) -> None:
    grey16 = np.array([[0, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    x = read_image(tmp_path / "g16.png")
    assert x.shape == (1, 2, 1) and x.dtype == np.float32 and x[0, 1, 0] == pytest.approx(1.0)
    assert read_image(tmp_path / "g16.png", channels=3).shape == (1, 2, 3)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 2] = 255  # red in OpenCV's BGRA order
    cv2.imwrite(str(tmp_path / "c.png"), rgba)
    rgb = read_image(tmp_path / "c.png")
    assert rgb.shape == (2, 2, 3) and rgb[0, 0].tolist() == [1.0, 0.0, 0.0]
    assert read_image(tmp_path / "c.png", channels=1).shape == (2, 2, 1)


def test_truncated_image_is_a_clear_error(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "full.png"), (np.random.rand(64, 64, 3) * 255).astype(np.uint8))
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnetsegError, match=r"cut\.png: not a readable image"):
        read_image(tmp_path / "cut.png")


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


@pytest.mark.parametrize("mode,size", [("resize", (64, 96)), ("letterbox", (64, 64)), ("pad", None)])
def test_placement_round_trip(mode: str, size: tuple[int, int] | None) -> None:
    orig = (45, 70)
    p = plan_placement(orig, size, mode, divisor=32)
    assert p.out[0] % 32 == 0 and p.out[1] % 32 == 0
    ramp = np.linspace(0, 1, orig[0] * orig[1], dtype=np.float32).reshape(*orig, 1)
    fitted = fit_image(ramp, p)
    assert fitted.shape[:2] == p.out
    back = restore(torch.from_numpy(fitted.transpose(2, 0, 1).copy()), p)[0].numpy()
    assert back.shape == orig
    assert np.abs(back - ramp[..., 0]).max() < (1e-6 if mode == "pad" else 0.05)
    mask = fit_mask(np.zeros(orig, np.uint8), p)
    assert (mask == IGNORE).sum() == p.out[0] * p.out[1] - p.scaled[0] * p.scaled[1]


def test_size_check_suggests_a_valid_size() -> None:
    with pytest.raises(UnetsegError, match="use --size 256x384"):
        check_size([250, 380], "resize", 32)


def test_atomic_writes_follow_the_umask(tmp_path: Path) -> None:
    """A lab's shared folder can read what we write: files get 0666 less the umask, not mkstemp's 0600."""
    import os

    from unetseg.core.fileio import write_json, write_png

    old = os.umask(0o002)
    try:
        a = write_json(tmp_path / "a.json", {"x": 1})
        os.umask(0o027)
        b = write_png(tmp_path / "b.png", np.zeros((4, 4), np.uint8))
    finally:
        os.umask(old)
    assert a.stat().st_mode & 0o777 == 0o664 and b.stat().st_mode & 0o777 == 0o640
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
