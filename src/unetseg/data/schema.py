"""The declared schema of the dataset YAML: each key's type (strict: ``'false'`` is not a boolean, ``512.5``
not an integer), ranges and sizes, checked before any file is listed (``spec._read_yaml``)."""

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
    """A dataset YAML (README, "Dataset YAML")."""

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
