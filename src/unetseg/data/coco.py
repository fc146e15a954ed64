"""COCO instance annotations -> semantic class masks, and masks -> COCO results (RLE).

Rasterising (pycocotools): class 0 is background; every annotation - polygons, RLE, or iscrowd RLE - is
painted with its class. **Paint order**: larger objects first, smaller ones over them, so windows stay
visible on the facade they lie on; among equal areas, file order. Categories can be selected and merged
(``classes``: names, or ``{name: [category, ...]}`` entries); unselected categories stay background.
Rendered masks are cached outside the dataset (``$UNETSEG_CACHE`` or ``~/.cache/unetseg``), keyed by the
json file's content and the options, so the dataset itself is never written to.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UnetsegError
from ..fileio import cache_root, write_png, write_text
from ..instances import MAX_INSTANCES, image_objects

COCO_NAMES = ("_annotations.coco.json", "annotations.json", "instances.json")


def find_coco_json(split_dir: Path) -> Path | None:
    for name in COCO_NAMES:
        if (split_dir / name).is_file():
            return split_dir / name
    return None


def _load(path: Path) -> Any:
    from pycocotools.coco import COCO

    try:
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            return COCO(str(path))
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        raise UnetsegError(f"{path}: not a readable COCO json ({type(e).__name__}: {e})") from e


def class_groups(coco: Any, classes: list | None) -> tuple[list[str], dict[int, int]]:
    """Class names (background first) and category id -> class index."""
    cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    used = sorted({a["category_id"] for a in coco.dataset.get("annotations", [])})
    if classes is None:
        names, mapping = ["background"], {}
        for cid in used:  # categories without annotations (Roboflow's placeholder) are left out
            if cats[cid] not in names:
                names.append(cats[cid])
            mapping[cid] = names.index(cats[cid])
        return names, mapping
    by_name: dict[str, list[int]] = {}
    for cid, name in cats.items():
        by_name.setdefault(name, []).append(cid)
    names, mapping = ["background"], {}
    for entry in classes:
        if isinstance(entry, dict):
            (name, members), = entry.items()
        else:
            name, members = str(entry), [str(entry)]
        names.append(str(name))
        for member in members:
            if member not in by_name:
                raise UnetsegError(f"COCO category {member!r} not found (known: {', '.join(sorted(by_name))})")
            for cid in by_name[member]:
                mapping[cid] = len(names) - 1
    return names, mapping


def render_masks(coco: Any, image_info: dict, mapping: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Class-index mask and instance IDs (uint16; 0 = none) of one image, painted larger objects first."""
    shape = (image_info["height"], image_info["width"])
    mask, ids = np.zeros(shape, np.uint8), np.zeros(shape, np.uint16)
    anns = [a for a in coco.loadAnns(coco.getAnnIds(imgIds=image_info["id"])) if a["category_id"] in mapping]
    if len(anns) > MAX_INSTANCES:
        raise UnetsegError(f"image {image_info.get('file_name')}: {len(anns)} objects, over the {MAX_INSTANCES} an "
                           "instance-ID PNG holds")
    k = 0
    for ann in sorted(anns, key=lambda a: -float(a.get("area", 0))):
        inside = coco.annToMask(ann).astype(bool)
        mask[inside] = mapping[ann["category_id"]]
        if not ann.get("iscrowd"):  # a crowd region is a class's pixels, not one object
            k += 1
            ids[inside] = k
    return mask, ids


def explicit_classes(json_path: Path, classes: list | None) -> list[dict[str, list[str]]]:
    """The class groups of a json (its used categories when ``classes`` is None) as explicit
    ``{name: [category, ...]}`` entries, so that other splits map categories to the same indices."""
    coco = _load(json_path)
    names, mapping = class_groups(coco, classes)
    cats = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    return [{name: sorted({cats[cid] for cid, idx in mapping.items() if idx == i})} for i, name in
            enumerate(names) if i > 0]


CACHE_LAYOUT = 2  # masks/ and instances/ folders (1: masks only, at the top)


def materialize(json_path: Path, images_dir: Path, classes: list | None = None) -> tuple[Path, list[str]]:
    """Render every image's mask and instance IDs once into the cache (``masks/`` and ``instances/`` beside
    it); return the mask folder and the class names."""
    coco = _load(json_path)
    names, mapping = class_groups(coco, classes)
    key = json.dumps([str(images_dir), classes, CACHE_LAYOUT]).encode()
    digest = hashlib.sha1(json_path.read_bytes() + key).hexdigest()[:16]
    out = cache_root() / "coco" / digest
    done = out / ".complete"
    if not done.exists():
        for info in coco.loadImgs(coco.getImgIds()):
            if not (images_dir / info["file_name"]).is_file():
                raise UnetsegError(f"{json_path}: image {info['file_name']} not found in {images_dir}")
            mask, ids = render_masks(coco, info, mapping)
            stem = Path(info["file_name"]).stem
            write_png(out / "masks" / f"{stem}.png", mask)
            write_png(out / "instances" / f"{stem}.png", ids)
        write_text(done, json.dumps(names))
    return out / "masks", names


def coco_truth(json_paths: list[str | Path], groups: list, file_names: list[str]) -> tuple[dict, dict[str, int]]:
    """The instances of the images named ``file_names`` (by base name) from COCO jsons, as a COCO dataset
    whose category ids are unetseg's class indices (``groups``: the explicit classes the dataset was
    rendered with); and the image id of each file name."""
    images: list[dict] = []
    annotations: list[dict] = []
    ids: dict[str, int] = {}
    names: list[str] = []
    wanted = set(file_names)
    for json_path in json_paths:
        coco = _load(Path(json_path))
        names, mapping = class_groups(coco, groups)
        for info in coco.loadImgs(coco.getImgIds()):
            name = Path(info["file_name"]).name
            if name not in wanted or name in ids:
                continue
            ids[name] = len(ids) + 1
            images.append({"id": ids[name], "file_name": name, "height": info["height"], "width": info["width"]})
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=info["id"])):
                if ann["category_id"] in mapping:
                    area = ann.get("area", ann["bbox"][2] * ann["bbox"][3] if "bbox" in ann else 0.0)
                    annotations.append({**ann, "id": len(annotations) + 1, "image_id": ids[name],
                                        "category_id": mapping[ann["category_id"]], "area": area,
                                        "iscrowd": ann.get("iscrowd", 0)})
    categories = [{"id": i, "name": n} for i, n in enumerate(names) if i > 0]
    return {"images": images, "categories": categories, "annotations": annotations}, ids


def mask_to_coco_results(mask: np.ndarray, image_id: int, category_ids: dict[int, int],
                         probabilities: np.ndarray | None = None) -> list[dict]:
    """COCO results: one RLE per class and connected component, scored by its mean probability (1 without
    ``probabilities``). ``category_ids``: class index -> COCO category id (background is never reported)."""
    classes = max(category_ids, default=1) + 1
    probs = probabilities if probabilities is not None else np.ones((classes, *mask.shape), np.float32)
    return objects_to_coco_results(*image_objects(mask, probs), image_id, category_ids)


def objects_to_coco_results(ids: np.ndarray, labels: list[int], scores: list[float], image_id: int,
                            category_ids: dict[int, int]) -> list[dict]:
    """COCO results of an image's objects (instance IDs, each ID's class and score; see
    ``instances.image_objects``): one RLE each, of the classes ``category_ids`` maps to a COCO category."""
    from pycocotools import mask as mask_utils
    from scipy import ndimage

    results = []
    full = np.zeros(ids.shape, np.uint8, order="F")
    for k, box in enumerate(ndimage.find_objects(ids.astype(np.int32)), start=1):
        if box is None or labels[k - 1] not in category_ids:
            continue
        region = ids[box] == k  # work inside the object's box, not the whole image
        full[box] = region
        rle = mask_utils.encode(full)
        full[box] = 0
        rle["counts"] = rle["counts"].decode("ascii")
        results.append({"image_id": int(image_id), "category_id": int(category_ids[labels[k - 1]]),
                        "segmentation": rle, "area": int(region.sum()), "score": scores[k - 1]})
    return results


def rle_to_mask(rle: dict) -> np.ndarray:
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}).astype(bool)
