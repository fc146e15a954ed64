"""Tests of ``unetseg.data.images``."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from tests.fixtures import TINY, assert_one_line_error, run, tiny_model_file, write_binary_dataset
from unetseg.core.errors import UnetsegError
from unetseg.data.discover import load_dataset
from unetseg.data.images import IGNORE, MaskDecoder, read_header, read_image, read_mask_raw
from unetseg.data.stats import check_pairs


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


def _jpeg_dataset(root: Path, multi: bool = False) -> Path:
    rng = np.random.default_rng(1)
    for split, n in (("train", 6), ("valid", 2), ("test", 2)):
        for i in range(n):
            (root / split / "images").mkdir(parents=True, exist_ok=True)
            (root / split / "masks").mkdir(parents=True, exist_ok=True)
            image = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / split / "images" / f"{i}.png")
            mask = np.zeros((48, 48), np.uint8)
            mask[8:30, 10:40] = 255 if not multi else 1
            if multi:
                mask[30:44, 4:20] = 2
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.jpg", quality=75)
    return root


def test_binary_jpeg_masks_are_snapped_with_a_count(tmp_path: Path, caplog) -> None:
    info = load_dataset(_jpeg_dataset(tmp_path / "d"))
    assert info.binary and info.decoder.snap and info.num_classes == 2
    raw = read_mask_raw(info.split("train")[0].mask)
    assert len(np.unique(raw)) > 2  # compression noise was there
    with caplog.at_level(logging.WARNING):
        stats = check_pairs(info.split("train"), info.decoder)
    assert "snapped to 0 or 255" in caplog.text and "pixels" in caplog.text
    assert stats.total[1] == 6 * 22 * 30  # the drawn rectangle exactly, not 256 classes


def test_multiclass_jpeg_masks_are_an_error(tmp_path: Path, capsys) -> None:
    data = _jpeg_dataset(tmp_path / "d", multi=True)
    code, _, err = run(["train", "--data", str(data), "--runs-dir", str(tmp_path / "runs"), *TINY], capsys)
    assert_one_line_error(code, err, ".jpg", "save masks as PNG")
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_to_images_and_masks(tmp_path: Path, orientation: int) -> None:
    rng = np.random.default_rng(orientation)
    stored = rng.integers(0, 255, (6, 10, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "photo.png"
    Image.fromarray(stored).save(path, exif=exif)
    with Image.open(path) as img:
        displayed = np.asarray(ImageOps.exif_transpose(img))
    assert read_header(path).orientation == orientation
    assert (read_image(path) * 255).round().astype(np.uint8).tolist() == displayed.tolist()
    assert read_mask_raw(path).tolist() == displayed.tolist()
    assert read_header(path).height == displayed.shape[0] and read_header(path).width == displayed.shape[1]


def test_rotated_phone_photo_pairs_with_the_mask_drawn_as_displayed(tmp_path: Path, capsys) -> None:
    """A JPEG stored 60x40 and shown 40x60 gets a 40x60 mask; training reads both as displayed and predict
    writes its mask in the displayed orientation."""
    root = tmp_path / "d"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    for split, n in (("train", 4), ("valid", 2), ("test", 2)):
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir(parents=True)
        for i in range(n):
            displayed = np.zeros((64, 32, 3), np.uint8)
            displayed[:32] = 250  # bright top half, as the user sees the photo
            stored = np.rot90(displayed, 1)  # what the camera saved
            Image.fromarray(np.ascontiguousarray(stored)).save(root / split / "images" / f"{i}.jpg", exif=exif)
            mask = np.zeros((64, 32), np.uint8)
            mask[:32] = 255  # drawn on the displayed picture
            Image.fromarray(mask).save(root / split / "masks" / f"{i}.png")
    info = load_dataset(root)
    stats = check_pairs(info.split("train"), info.decoder)
    assert stats.sizes[0] == (64, 32)
    image = read_image(info.split("train")[0].image)
    mask = info.decoder.decode(read_mask_raw(info.split("train")[0].mask))
    bright = image[..., 0] > 0.5
    assert (bright == (mask == 1)).mean() > 0.95  # label and pixels line up
    model = tiny_model_file(tmp_path, "pad")
    code, _, _ = run(["predict", "--model", str(model), "--input", str(root / "test" / "images"), "--output",
                      str(tmp_path / "pred"), "--backend", "torch"], capsys)
    assert code == 0
    assert np.asarray(Image.open(tmp_path / "pred" / "0.png")).shape == (64, 32)


def test_mixed_grey_and_rgb_become_rgb_with_a_warning(tmp_path: Path, caplog) -> None:
    data = write_binary_dataset(tmp_path / "d", {"train": 4, "valid": 2})
    first = data / "train" / "images" / "train0.png"
    Image.open(first).convert("RGB").save(first)
    info = load_dataset(data)
    with caplog.at_level(logging.WARNING):
        channels = check_pairs(info.split("train") + info.split("valid"), info.decoder).input_channels(data)
    assert channels == 3 and "grey and 1 colour images" in caplog.text


def test_animated_gif_is_read_as_its_first_frame_everywhere(tmp_path: Path, caplog) -> None:
    from unetseg.core.fileio import list_inputs
    from unetseg.data.discover import list_images
    from unetseg.data.images import IMAGE_EXTENSIONS

    frames = [Image.fromarray(np.full((8, 8, 3), rgb, np.uint8)) for rgb in ((40, 90, 160), (200, 10, 10))]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    assert list_images(tmp_path) == [gif]
    assert list_inputs(tmp_path, IMAGE_EXTENSIONS, "images") == list_inputs(gif, IMAGE_EXTENSIONS, "images") == [gif]
    with caplog.at_level(logging.WARNING):
        image = read_image(gif)
    assert image.shape == (8, 8, 3) and np.allclose(image[0, 0] * 255, (40, 90, 160), atol=6)
    assert "animated (2 frames); the first frame is used" in caplog.text
