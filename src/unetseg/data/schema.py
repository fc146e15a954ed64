"""The declared schema of the dataset YAML: each key's type (strict: ``'false'`` is not a boolean, ``512.5``
not an integer), ranges and sizes, checked before any file is listed (``layout.read_dataset_yaml``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

STRICT = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")]
Folder = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
Byte = Annotated[int, Field(ge=0, le=255)]
Colour = Annotated[list[Byte], Field(min_length=3, max_length=3)]
ClassList = Annotated[list[Name], Field(min_length=1, max_length=256)]
ClassMap = Annotated[dict[Byte, Name], Field(min_length=1, max_length=256)]


class Split(BaseModel):
    """One split: ``images`` and ``masks`` folders, or a ``coco`` json (and its ``images`` folder)."""

    model_config = STRICT
    images: Folder | None = None
    masks: Folder | None = None
    coco: Folder | None = None


class DatasetYaml(BaseModel):
    """A dataset YAML (docs/datasets.md, "dataset YAML")."""

    model_config = STRICT
    root: Folder = "."
    name: Name | None = None
    train: Split | None = None
    valid: Split | None = None
    val: Split | None = None
    validation: Split | None = None
    test: Split | None = None
    classes: ClassList | ClassMap | None = None
    ignore_index: Byte | Annotated[list[Byte], Field(min_length=1, max_length=4)] | None = None
    palette: Annotated[list[Colour], Field(max_length=256)] | Annotated[dict[Name, Colour], Field(max_length=256)] \
        | None = None
    mask_suffix: Annotated[str, StringConstraints(max_length=100)] = ""
    mask_mode: Literal["auto", "binary", "index", "palette"] = "auto"
    allow_unpaired: bool = False
    spectrogram: dict[str, Any] | None = None  # checked as the model file's spectrogram when a run starts
    coco_classes: Annotated[list[Any], Field(max_length=256)] | None = None
    events: Literal["time", "box"] | None = None


# ------------------------------------------------------------------------------------------------ COCO json

MAX_COCO_BYTES = 512 << 20
MAX_COCO_PIXELS = 1 << 26  # an image entry's canvas (64 M pixels, 8192 x 8192)
MAX_POLYGON_VALUES = 200_000  # coordinates of one annotation's polygons together
MAX_RLE_CHARS = 1 << 22
LOOSE = ConfigDict(strict=True, extra="allow", allow_inf_nan=False)
Size = Annotated[int, Field(ge=1, le=65536)]
Coordinate = Annotated[float, Field(ge=-1e7, le=1e7)]


class CocoImage(BaseModel):
    model_config = LOOSE
    id: int
    file_name: Annotated[str, StringConstraints(min_length=1, max_length=1000, pattern=r"^[^\x00-\x1f\x7f]*$")]
    height: Size
    width: Size


class CocoCategory(BaseModel):
    model_config = LOOSE
    id: int
    name: Name


class CocoRle(BaseModel):
    model_config = LOOSE
    size: Annotated[list[Size], Field(min_length=2, max_length=2)]
    counts: Annotated[list[Annotated[int, Field(ge=0)]], Field(max_length=MAX_RLE_CHARS)] | \
        Annotated[str, StringConstraints(max_length=MAX_RLE_CHARS, pattern=r"^[0-o]*$")]


class CocoAnnotation(BaseModel):
    model_config = LOOSE
    id: int
    image_id: int
    category_id: int
    segmentation: Annotated[list[Annotated[list[Coordinate], Field(min_length=6)]], Field(min_length=1)] | CocoRle
    iscrowd: Literal[0, 1] = 0
    area: Annotated[float, Field(ge=0)] | None = None
    bbox: Annotated[list[Coordinate], Field(min_length=4, max_length=4)] | None = None


class CocoFile(BaseModel):
    model_config = LOOSE
    images: list[CocoImage]
    annotations: list[CocoAnnotation] = []
    categories: Annotated[list[CocoCategory], Field(min_length=1)]


class CocoResultsIds(BaseModel):
    """What ``predict --coco-json`` reads of a COCO json: image and category entries only."""

    model_config = LOOSE
    images: list[CocoImage]
    categories: list[CocoCategory] = []


def rle_string_counts(text: str) -> list[int]:
    """The run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``), decoded in Python so that
    a damaged one is refused before pycocotools reads it."""
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                raise ValueError("RLE string ends inside a number")
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts
