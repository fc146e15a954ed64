"""A dataset's layout: its folders per split, classes and mask settings, from a dataset YAML
(``read_dataset_yaml``, checked against ``data.schema.DatasetYaml`` before any file is listed) or a folder
(``data.discover``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unetseg.core.errors import UnetsegError

SPLIT_ALIASES = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}
YAML_KEYS = {"root", "name", "train", "valid", "val", "validation", "test", "classes", "ignore_index",
             "palette", "mask_suffix", "mask_mode", "allow_unpaired", "spectrogram", "coco_classes", "events"}

# Distinct colours for drawing classes (class 0 first); a dataset palette takes precedence.

@dataclass
class Layout:
    """Where a dataset's files are and how its masks read, from a folder or a dataset YAML."""

    root: Path
    dirs: dict[str, tuple[Path, Path]]
    classes: list[str] | None = None
    ignore_index: Any = None
    palette: list[tuple[int, int, int]] | None = None
    mask_suffix: str = ""
    mask_mode: str = "auto"
    allow_unpaired: bool = False
    name: str = ""
    spectrogram: dict[str, Any] | None = None
    events: str | None = None
    coco: dict[str, tuple[Path, Path]] = field(default_factory=dict)  # split -> (json, images folder)
    coco_classes: list | None = None


def read_dataset_yaml(path: Path) -> Layout:
    """A dataset YAML checked against ``data.schema.DatasetYaml``, its folders found, as a ``Layout``."""
    from pydantic import ValidationError

    from unetseg.core.errors import schema_error
    from unetseg.core.fileio import read_yaml
    from unetseg.data.schema import DatasetYaml

    data = read_yaml(path, "dataset YAML")
    if not isinstance(data, dict):
        raise UnetsegError(f"{path}: a dataset YAML must be a mapping")
    unknown = set(data) - YAML_KEYS
    if unknown:
        raise UnetsegError(f"{path}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                           f"(known: {', '.join(sorted(YAML_KEYS))})")
    try:
        data = DatasetYaml.model_validate(data).model_dump(exclude_unset=True)
    except ValidationError as e:
        raise schema_error(e, str(path)) from None
    root = (path.parent / str(data.get("root", "."))).resolve()
    if not root.is_dir():
        raise UnetsegError(f"{path}: root folder {root} not found")
    dirs: dict[str, tuple[Path, Path]] = {}
    coco: dict[str, tuple[Path, Path]] = {}
    for key, split in SPLIT_ALIASES.items():
        if key not in data:
            continue
        entry = data[key]
        if entry is None:
            continue
        if isinstance(entry, dict) and entry.get("coco") is not None:
            json_path, images = root / str(entry["coco"]), root / str(entry.get("images", Path(entry["coco"]).parent))
            if not json_path.is_file():
                raise UnetsegError(f"{path}: {key} COCO file {json_path} not found")
            coco[split] = (json_path, images)
            continue
        if not isinstance(entry, dict) or entry.get("images") is None or entry.get("masks") is None:
            raise UnetsegError(f"{path}: {key} must give 'images' and 'masks' folders (or 'coco' and 'images')")
        img_dir, mask_dir = root / str(entry["images"]), root / str(entry["masks"])
        for d in (img_dir, mask_dir):
            if not d.is_dir():
                raise UnetsegError(f"{path}: {key} folder {d} not found")
        dirs[split] = (img_dir, mask_dir)
    classes = data.get("classes")
    if isinstance(classes, dict):
        classes = [str(classes[k]) for k in sorted(classes)]
    palette = data.get("palette")
    if palette is not None:
        if isinstance(palette, dict):
            if classes is None:
                classes = [str(k) for k in palette]
            palette = [palette[c] for c in classes] if all(c in palette for c in classes) else None
        ok = isinstance(palette, list) and all(isinstance(c, list | tuple) and len(c) == 3 for c in palette)
        if not ok or (classes and len(palette) != len(classes)):
            raise UnetsegError(f"{path}: palette must give one [R, G, B] colour per class")
        palette = [tuple(int(v) for v in c) for c in palette]
    ignore = data.get("ignore_index")
    if isinstance(ignore, list):
        ignore = tuple(int(v) for v in ignore)
    return Layout(root=root, dirs=dirs, classes=classes, ignore_index=ignore, palette=palette,
                   mask_suffix=str(data.get("mask_suffix", "")),
                   mask_mode=str(data.get("mask_mode", "auto")),
                   allow_unpaired=bool(data.get("allow_unpaired", False)),
                   name=str(data.get("name", path.stem)), spectrogram=data.get("spectrogram"), coco=coco,
                   events=_events_kind(data.get("events"), path),
                   coco_classes=data.get("coco_classes"))


def _events_kind(value: Any, path: Path) -> str | None:
    if value is not None and value not in ("time", "box"):
        raise UnetsegError(f"{path}: events must be time or box, not {value!r}")
    return value
