"""Reading images and masks, and decoding masks into class indices.

Images are read with OpenCV (8 or 16 bit, grey, RGB or RGBA; alpha dropped) and scaled to float32 in
[0, 1]. Masks are read with Pillow so indexed ('P') PNGs keep their indices. Decoded masks are uint8
class indices where ``IGNORE`` (255) marks pixels left out of loss and metrics: the dataset's own
ignore value and any padding added to fit the network input.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from unetseg.core.errors import UnetsegError

IGNORE = 255
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
LOSSY_FORMATS = ("JPEG", "MPO")
SNAP_LOW, SNAP_HIGH = 63, 192  # a lossy binary mask: values up to SNAP_LOW are 0, from SNAP_HIGH on 255
# Pillow's EXIF orientation (1-8) as numpy steps on the stored pixels -> the image as displayed.
_ORIENT = {
    2: lambda a: a[:, ::-1], 3: lambda a: np.rot90(a, 2), 4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a.swapaxes(0, 1), 2),
    8: lambda a: np.rot90(a, 1),
}
_warned: set[tuple[str, str]] = set()
log = logging.getLogger(__name__)


def _warn_once(path: Path, what: str, message: str) -> None:
    if (str(path), what) not in _warned:
        _warned.add((str(path), what))
        log.warning("%s: %s", path, message)


@dataclass(frozen=True)
class ImageHeader:
    """What the file header says: the displayed size, the EXIF orientation, format, frames and channels."""

    height: int
    width: int
    orientation: int
    format: str
    frames: int
    channels: int


def read_header(path: str | Path) -> ImageHeader:
    """Read an image's header without decoding its pixels."""
    try:
        with Image.open(path) as img:
            try:
                # A PNG's eXIf chunk after the pixels would make Pillow decode them all to find it (40% of a
                # read): only one stored before the pixels (as cameras and Pillow write it) is read.
                exif = img.getexif() if img.format != "PNG" or "exif" in img.info else {}
                orientation = int(exif.get(0x0112, 1))
            except Exception:  # noqa: BLE001 - a broken EXIF block is ignored as viewers do
                orientation = 1
            orientation = orientation if orientation in _ORIENT else 1
            h, w = (img.width, img.height) if orientation >= 5 else (img.height, img.width)
            grey = img.mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F", "LA") or (
                img.mode == "P" and _palette_is_grey(img))
            return ImageHeader(h, w, orientation, img.format or "", int(getattr(img, "n_frames", 1)),
                               1 if grey else 3)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
        raise UnetsegError(f"{path}: not a readable image ({_reason(e)})") from e
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"{path}: {_reason(e)}") from e


class ImageTooLarge(UnetsegError):
    """An image whose header declares more pixels than can be decoded safely (a decompression bomb)."""


def _palette_is_grey(img: Image.Image) -> bool:
    palette = np.asarray(img.getpalette() or [], np.int64).reshape(-1, 3)
    return bool(len(palette) and (palette == palette[:, :1]).all())


def orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Stored pixels -> as displayed, following the EXIF orientation tag."""
    step = _ORIENT.get(orientation)
    return np.ascontiguousarray(step(array)) if step else array


def read_image(path: str | Path, channels: int | None = None) -> np.ndarray:
    """Read an image as float32 HxWxC in [0, 1], as displayed (EXIF orientation applied); convert to
    ``channels`` (1 or 3) when given. Animated images give their first frame, with a warning."""
    path = Path(path)
    header = read_header(path)
    if header.frames > 1:
        _warn_once(path, "frames", f"animated ({header.frames} frames); the first frame is used")
    if header.format == "GIF":
        with Image.open(path) as img:
            image = np.asarray(img.convert("RGB" if header.channels == 3 else "L"))
    else:
        try:
            data = np.fromfile(path, dtype=np.uint8)
        except OSError as e:
            raise UnetsegError(f"{path}: cannot read image: {e.strerror or e}") from e
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise UnetsegError(f"{path}: not a readable image (corrupt, truncated or unsupported format)")
    image = orient(image, header.orientation)
    if image.dtype == np.uint8:
        scale = 255.0
    elif image.dtype == np.uint16:
        scale = 65535.0
    elif image.dtype == np.float32:
        scale = 1.0
    else:
        raise UnetsegError(f"{path}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    elif header.format == "GIF":
        pass  # Pillow gives RGB
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    elif image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    image = image.astype(np.float32)
    image /= scale  # in place: one float image, not two (the same bits)
    if channels is not None:
        image = convert_channels(image, channels)
    return image


def convert_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """Grey <-> RGB so that every image matches the model's input channels."""
    have = image.shape[2]
    if have == channels:
        return image
    if channels == 1:
        return image.mean(axis=2, keepdims=True, dtype=np.float32)
    return np.repeat(image[:, :, :1], channels, axis=2)


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) as displayed, from the file header, without decoding the pixels."""
    header = read_header(path)
    return header.height, header.width


def image_channels(path: str | Path) -> int:
    """1 for grey images, 3 for colour ones."""
    return read_header(path).channels


def read_mask_raw(path: str | Path) -> np.ndarray:
    """The mask's stored values as displayed (EXIF orientation applied): HxW for grey/indexed masks, HxWx3
    for RGB masks. Animated masks give their first frame, with a warning."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            if getattr(img, "n_frames", 1) > 1:
                _warn_once(path, "frames", f"animated ({img.n_frames} frames); the first frame is used")
            img = ImageOps.exif_transpose(img)
            img.load()
            if img.mode in ("RGBA", "LA"):
                img = img.convert(img.mode[:-1])
            elif img.mode == "1":
                img = img.convert("L")
            array = np.asarray(img)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise UnetsegError(f"{path}: not a readable mask image ({_reason(e)})") from e
    if array.ndim == 3 and array.shape[2] == 3 and _is_grey(array):
        array = array[:, :, 0]
    return array


def read_instance_ids(path: str | Path) -> np.ndarray:
    """An instance-ID PNG as uint16 (0 = no instance, k = instance k): a single-channel 8- or 16-bit image."""
    path = Path(path)
    data = np.fromfile(path, dtype=np.uint8) if path.is_file() else np.zeros(0, np.uint8)
    ids = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if ids is None:
        raise UnetsegError(f"{path}: not a readable instance-ID PNG")
    if ids.ndim != 2 or ids.dtype not in (np.uint8, np.uint16):
        raise UnetsegError(f"{path}: an instance-ID PNG must be one 8- or 16-bit channel, not "
                           f"{ids.shape[2] if ids.ndim == 3 else 1} channel(s) of {ids.dtype}")
    return ids.astype(np.uint16)


def _is_grey(rgb: np.ndarray) -> bool:
    return bool((rgb[:, :, 0] == rgb[:, :, 1]).all() and (rgb[:, :, 1] == rgb[:, :, 2]).all())


def _reason(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text.split(": ", 1)[0] if "cannot identify" in text else text


@dataclass(frozen=True)
class MaskDecoder:
    """Maps stored mask values to class indices, rejecting values outside the classes.

    ``mode``: ``binary`` (0 = background; 1 or 255 = foreground), ``index`` (value = class index) or
    ``palette`` (RGB colour -> class index through ``palette``). ``ignore_value`` is the dataset's
    "don't care" value (a grey level, or an RGB colour for palette masks).
    """

    mode: str
    num_classes: int
    ignore_value: int | tuple[int, ...] | None = None
    palette: tuple[tuple[int, int, int], ...] | None = None
    snap: bool = False  # binary masks saved lossy (JPEG): values near 0 and 255 snapped to them

    def decode(self, raw: np.ndarray, path: str | Path = "mask") -> np.ndarray:
        if self.mode == "palette":
            return self._decode_palette(raw, path)
        if raw.ndim == 3:
            raise UnetsegError(
                f"{path}: colour mask but the dataset has no palette; name the class colours in a "
                "dataset YAML (palette:)"
            )
        values = raw.astype(np.int64)
        out = np.full(values.shape, IGNORE, dtype=np.uint8)
        ignore = values == self.ignore_value if self.ignore_value is not None else np.zeros_like(values, bool)
        if self.mode == "binary" and self.snap:
            fg = (values >= SNAP_HIGH) & ~ignore
            bg = (values <= SNAP_LOW) & ~ignore
            out[bg] = 0
            out[fg] = 1
            bad = ~(fg | bg | ignore)
            expected = f"near 0 (up to {SNAP_LOW}) or near 255 (from {SNAP_HIGH}), as a lossy 0/255 mask"
        elif self.mode == "binary":
            fg = ((values == 1) | (values == 255)) & ~ignore
            bg = (values == 0) & ~ignore
            out[bg] = 0
            out[fg] = 1
            bad = ~(fg | bg | ignore)
            expected = "0 and 1 or 0 and 255"
        else:
            valid = (values >= 0) & (values < self.num_classes) & ~ignore
            out[valid] = values[valid]
            bad = ~(valid | ignore)
            expected = f"0..{self.num_classes - 1}"
        if bad.any():
            found = np.unique(values[bad])[:5].tolist()
            ig = f" or the ignore value {self.ignore_value}" if self.ignore_value is not None else ""
            raise UnetsegError(f"{path}: mask values {found} outside the classes (expected {expected}{ig})")
        return out

    def _decode_palette(self, raw: np.ndarray, path: str | Path) -> np.ndarray:
        assert self.palette is not None
        if raw.ndim != 3:
            raise UnetsegError(f"{path}: expected an RGB mask for the dataset's colour palette")
        code = _rgb_code(raw)
        out = np.full(code.shape, IGNORE, dtype=np.uint8)
        known = np.zeros(code.shape, bool)
        for index, colour in enumerate(self.palette):
            hit = code == _rgb_code(np.array(colour).reshape(1, 1, 3))
            out[hit] = index
            known |= hit
        if self.ignore_value is not None:
            known |= code == _rgb_code(np.array(self.ignore_value).reshape(1, 1, 3))
        if not known.all():
            y, x = np.argwhere(~known)[0]
            raise UnetsegError(
                f"{path}: mask colour {tuple(int(c) for c in raw[y, x])} at ({x}, {y}) is not in the palette"
            )
        return out


def _rgb_code(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
