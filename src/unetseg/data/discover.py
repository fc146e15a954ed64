"""Finding a dataset's files: folder layouts, dataset YAML, pairing by stem, splits, classes.

A dataset is either a folder laid out as the course notebooks do it::

    <root>/train/{images,masks}  <root>/valid|val/{images,masks}  <root>/test/{images,masks}
    (or just <root>/{images,masks}: one train split, divided by seeded fractions)

or a YAML file that names the folders and the classes (see docs/datasets.md, "dataset YAML").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import files_in
from unetseg.data.images import (
    IMAGE_EXTENSIONS,
    LOSSY_FORMATS,
    SNAP_HIGH,
    SNAP_LOW,
    MaskDecoder,
    read_header,
    read_mask_raw,
)
from unetseg.data.layout import SPLIT_ALIASES, Layout, read_dataset_yaml

log = logging.getLogger(__name__)

DEFAULT_COLOURS = [
    (0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
    (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0),
    (255, 215, 180), (0, 0, 128), (128, 128, 128),
]


@dataclass(frozen=True)
class Pair:
    image: Path
    mask: Path
    instances: Path | None = None  # an instance-ID PNG (uint16, 0 = none) where the dataset has them


@dataclass
class DatasetInfo:
    """A resolved dataset: file pairs per split and how to decode its masks."""

    name: str
    source: Path
    splits: dict[str, list[Pair]]
    classes: list[str]
    decoder: MaskDecoder
    colours: list[tuple[int, int, int]] = field(default_factory=list)
    spectrogram: dict[str, Any] | None = None  # audio datasets: how their images were made
    events: str | None = None  # audio datasets: "time" (onset/offset annotations) or "box"
    coco: dict[str, Any] | None = None  # COCO datasets: {"jsons": [...], "groups": classes} for instance truth

    @property
    def binary(self) -> bool:
        return self.decoder.mode == "binary"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def instances(self) -> bool:
        """Every image of every split has instance targets (an instance head can learn from them)."""
        pairs = [p for ps in self.splits.values() for p in ps]
        return bool(pairs) and all(p.instances is not None for p in pairs)

    def to_record(self) -> dict[str, Any]:
        """The dataset as a run folder records it (``dataset.json``): classes, decoding, the exact files."""
        d = self.decoder
        return {
            "source": str(self.source), "name": self.name, "classes": self.classes, "binary": self.binary,
            "spectrogram": self.spectrogram, "events": self.events, "coco": self.coco,
            "colours": [list(c) for c in self.colours],
            "decoder": {"mode": d.mode, "num_classes": d.num_classes, "ignore_value": d.ignore_value,
                        "palette": d.palette, "snap": d.snap},
            "splits": {s: [[str(p.image.resolve()), str(p.mask.resolve()),
                            *([str(p.instances.resolve())] if p.instances else [])] for p in pairs]
                       for s, pairs in self.splits.items()},
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any], source: Path | None = None) -> DatasetInfo:
        """A dataset as ``to_record`` wrote it (``source`` defaults to the recorded one)."""
        d = rec["decoder"]
        ignore = tuple(d["ignore_value"]) if isinstance(d["ignore_value"], list) else d["ignore_value"]
        palette = tuple(tuple(c) for c in d["palette"]) if d["palette"] else None
        decoder = MaskDecoder(d["mode"], d["num_classes"], ignore, palette, bool(d.get("snap", False)))
        splits = {s: [Pair(Path(files[0]), Path(files[1]), Path(files[2]) if len(files) > 2 else None)
                      for files in pairs] for s, pairs in rec["splits"].items()}
        return cls(rec["name"], Path(source or rec["source"]), splits, rec["classes"], decoder,
                   [tuple(c) for c in rec["colours"]], rec.get("spectrogram"), rec.get("events"), rec.get("coco"))

    def split(self, name: str) -> list[Pair]:
        key = SPLIT_ALIASES.get(name, name)
        pairs = self.splits.get(key, [])
        if not pairs:
            raise UnetsegError(f"{self.source}: split {name!r} is empty or missing")
        return pairs


def load_dataset(path: str | Path, seed: int = 0, val_fraction: float = 0.15,
                 test_fraction: float = 0.15, need_train: bool = True) -> DatasetInfo:
    """Resolve a dataset folder or YAML into file pairs per split, classes and a mask decoder.

    ``need_train`` False (evaluation) accepts a dataset without a train split: its masks are read from
    the splits it has."""
    path = Path(path)
    if not path.exists():
        raise UnetsegError(f"{path}: dataset not found")
    layout = read_dataset_yaml(path) if path.is_file() else _discover_folder(path)
    coco = _materialize_coco(layout) if layout.coco else None
    splits = {
        split: pair_files(img_dir, mask_dir, layout.mask_suffix, layout.allow_unpaired)
        for split, (img_dir, mask_dir) in layout.dirs.items()
    }
    if splits.get("train"):
        splits = split_fractions(splits, seed, val_fraction, test_fraction, path)
        decoder, classes = _make_decoder(layout, splits["train"], path)
    elif need_train or not any(splits.values()):
        raise UnetsegError(f"{path}: the train split is empty or missing")
    else:
        decoder, classes = _make_decoder(layout, [p for pairs in splits.values() for p in pairs], path)
    if layout.palette:
        colours = [tuple(c) for c in layout.palette]
    else:
        colours = [DEFAULT_COLOURS[i % len(DEFAULT_COLOURS)] for i in range(len(classes))]
    return DatasetInfo(layout.name or path.stem if path.is_file() else path.name, path, splits, classes,
                       decoder, colours, layout.spectrogram, layout.events, coco)


def _materialize_coco(layout: Layout) -> dict[str, Any]:
    """Render COCO splits to cached class-index masks; one class mapping (from train) for all splits.
    Returns where the instances are (the jsons) and the explicit class groups they map with."""
    from unetseg.data.coco import explicit_classes, materialize

    first = layout.coco.get("train") or next(iter(layout.coco.values()))
    groups = explicit_classes(first[0], layout.coco_classes)
    for split, (json_path, images_dir) in layout.coco.items():
        mask_dir, names = materialize(json_path, images_dir, groups)
        layout.dirs[split] = (images_dir, mask_dir)
    layout.classes, layout.mask_mode = names, "index"
    return {"jsons": [str(j.resolve()) for j, _ in layout.coco.values()], "groups": groups}


def _discover_folder(root: Path) -> Layout:
    if (root / "dataset.yaml").is_file():
        layout = read_dataset_yaml(root / "dataset.yaml")
        layout.name = layout.name if layout.name != "dataset" else root.name
        if not layout.dirs and not layout.coco:  # a YAML may give classes only
            layout.dirs, layout.coco = _discover_dirs(root), _discover_coco(root)
        return layout
    return Layout(root=root, dirs=_discover_dirs(root), name=root.name, coco=_discover_coco(root))


def _discover_coco(root: Path) -> dict[str, tuple[Path, Path]]:
    """Roboflow's COCO export: <root>/<split>/_annotations.coco.json beside the split's images."""
    from unetseg.data.coco import find_coco_json

    found = {}
    for child in sorted(root.iterdir()):
        split = SPLIT_ALIASES.get(child.name.lower())
        if split and child.is_dir() and not (child / "images").is_dir():
            json_path = find_coco_json(child)
            if json_path:
                found[split] = (json_path, child)
    return found


def _discover_dirs(root: Path) -> dict[str, tuple[Path, Path]]:
    dirs: dict[str, tuple[Path, Path]] = {}
    for child in sorted(root.iterdir()):
        split = SPLIT_ALIASES.get(child.name.lower())
        if split and child.is_dir() and (child / "images").is_dir():
            if split in dirs:
                raise UnetsegError(f"{root}: both {dirs[split][0].parent.name}/ and {child.name}/ look like "
                                   f"the {split} split")
            dirs[split] = (child / "images", child / "masks")
    if not dirs and (root / "images").is_dir():
        dirs["train"] = (root / "images", root / "masks")
    if not dirs and _discover_coco(root):
        return dirs
    if not dirs:
        raise UnetsegError(
            f"{root}: no dataset layout found (expected train/images + train/masks, images/ + masks/, "
            "or a dataset YAML)"
        )
    for img_dir, mask_dir in dirs.values():
        if not mask_dir.is_dir():
            raise UnetsegError(f"{mask_dir}: mask folder missing beside {img_dir}")
    return dirs


def list_images(folder: Path) -> list[Path]:
    return files_in(folder, IMAGE_EXTENSIONS)


def _by_stem(files: list[Path], suffix: str = "") -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        stem = f.stem
        if suffix:
            if not stem.endswith(suffix):
                continue
            stem = stem[: -len(suffix)]
        if stem in out:
            raise UnetsegError(f"{f}: two files share the stem {stem!r} ({out[stem].name} and {f.name})")
        out[stem] = f
    return out


def instances_dir(masks_dir: Path) -> Path:
    """Where a split's instance-ID PNGs are: ``instances/`` beside its ``masks/``."""
    return masks_dir.with_name("instances")


def pair_files(images_dir: Path, masks_dir: Path, mask_suffix: str = "",
               allow_unpaired: bool = False) -> list[Pair]:
    """Pair images with masks by file stem (never by sort order); unpaired files are an error. Where an
    ``instances/`` folder is beside the masks, each pair takes its instance-ID PNG of the same stem."""
    images = _by_stem(list_images(images_dir))
    masks = _by_stem(list_images(masks_dir), mask_suffix)
    lonely_images = sorted(set(images) - set(masks))
    lonely_masks = sorted(set(masks) - set(images))
    if (lonely_images or lonely_masks) and not allow_unpaired:
        first = images[lonely_images[0]] if lonely_images else masks[lonely_masks[0]]
        what = f"has no mask in {masks_dir}" if lonely_images else f"has no image in {images_dir}"
        more = len(lonely_images) + len(lonely_masks) - 1
        extra = f" ({more} more unpaired file{'s' if more != 1 else ''})" if more else ""
        raise UnetsegError(f"{first}: {what}{extra}; set allow_unpaired: true in a dataset YAML to skip them")
    if lonely_images or lonely_masks:
        log.warning("%s: skipped %d image(s) without mask and %d mask(s) without image",
                    images_dir, len(lonely_images), len(lonely_masks))
    stems = sorted(set(images) & set(masks))
    folder = instances_dir(masks_dir)
    if not folder.is_dir():
        return [Pair(images[s], masks[s]) for s in stems]
    instances = _by_stem(files_in(folder, (".png",)))
    missing = [s for s in stems if s not in instances]
    if missing:
        raise UnetsegError(f"{images[missing[0]]}: no instance-ID PNG {missing[0]}.png in {folder} "
                           f"({len(missing)} image(s) without one); give every image one or remove the folder")
    return [Pair(images[s], masks[s], instances[s]) for s in stems]


def split_fractions(splits: dict[str, list[Pair]], seed: int, val_fraction: float, test_fraction: float,
                    source: Path) -> dict[str, list[Pair]]:
    """Hold out valid (and test, if missing too) from train by seeded fractions."""
    out = dict(splits)
    need = [s for s, frac in (("valid", val_fraction), ("test", test_fraction))
            if not out.get(s) and frac > 0 and not (s == "test" and out.get("valid"))]
    if not need:
        return out
    train = sorted(out["train"], key=lambda p: p.image.stem)
    order = np.random.default_rng(seed).permutation(len(train))
    fractions = {"valid": val_fraction, "test": test_fraction}
    counts = {s: max(1, round(len(train) * fractions[s])) for s in need}
    if sum(counts.values()) >= len(train):
        raise UnetsegError(f"{source}: {len(train)} training pairs are too few to hold out "
                           f"{' and '.join(need)} splits")
    start = 0
    for s in need:
        out[s] = [train[i] for i in sorted(order[start:start + counts[s]])]
        start += counts[s]
    out["train"] = [train[i] for i in sorted(order[start:])]
    return out


def _make_decoder(layout: Layout, train: list[Pair], source: Path) -> tuple[MaskDecoder, list[str]]:
    classes, mode, ignore = layout.classes, layout.mask_mode, layout.ignore_index
    lossy = [p.mask for p in train if read_header(p.mask).format in LOSSY_FORMATS]
    if lossy and (layout.palette or mode in ("index", "palette") or (classes and len(classes) > 2)):
        raise UnetsegError(f"{lossy[0]}: a multi-class mask saved as JPEG; lossy compression changes class values "
                           "at every edge; save masks as PNG")
    if layout.palette:
        return MaskDecoder("palette", len(layout.palette), ignore, tuple(layout.palette)), list(classes or [])
    if mode == "auto":
        if classes is not None:
            mode = "binary" if len(classes) <= 2 else "index"
        else:
            values: set[int] = set()
            for pair in train:
                raw = read_mask_raw(pair.mask)
                if raw.ndim == 3:
                    raise UnetsegError(f"{pair.mask}: colour mask but the dataset has no palette; name the "
                                       "class colours in a dataset YAML (palette:)")
                values.update(np.unique(raw).tolist())
            values.discard(ignore)
            if lossy:
                if not all(v <= SNAP_LOW or v >= SNAP_HIGH for v in values) or max(values, default=0) < SNAP_HIGH:
                    raise UnetsegError(f"{lossy[0]}: masks saved as JPEG hold {len(values)} distinct values, not a "
                                       "0/255 mask with compression noise; save masks as PNG")
                mode = "binary"
            elif values <= {0, 1} or values <= {0, 255}:
                mode = "binary"
            else:
                mode = "index"
                classes = [f"class{i}" for i in range(int(max(values)) + 1)]
                log.warning("%s: no class names given; found %d classes from mask values", source, len(classes))
    if mode == "binary":
        if lossy and ignore is not None:
            raise UnetsegError(f"{lossy[0]}: masks saved as JPEG cannot keep an exact ignore value; save masks as PNG")
        names = classes if classes and len(classes) == 2 else ["background", (classes or ["foreground"])[-1]]
        return MaskDecoder("binary", 2, ignore, snap=bool(lossy)), names
    if mode == "index":
        if not classes:
            raise UnetsegError(f"{source}: mask_mode index needs a classes list")
        return MaskDecoder("index", len(classes), ignore), classes
    raise UnetsegError(f"{source}: unknown mask_mode {mode!r} (auto, binary, index or palette)")
