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

from unetseg.core.errors import UnetsegError
from unetseg.core.fileio import cache_root, write_png, write_text
from unetseg.instances.centres import MAX_INSTANCES, image_objects

COCO_NAMES = ("_annotations.coco.json", "annotations.json", "instances.json")


def find_coco_json(split_dir: Path) -> Path | None:
    for name in COCO_NAMES:
        if (split_dir / name).is_file():
            return split_dir / name
    return None


def read_coco_json(path: Path, schema: Any = None) -> dict:
    """A COCO json read and checked against its declared schema (``data.schema.CocoFile``) and across its
    entries - ids that exist, polygons and RLEs that fit their image, canvases within bounds - before
    pycocotools sees it (which crashes the process on a NaN, a 1e12 coordinate or an RLE of another size)."""
    from pydantic import ValidationError

    from unetseg.core.errors import schema_error
    from unetseg.data.schema import MAX_COCO_BYTES, CocoFile

    path = Path(path)
    try:
        if path.stat().st_size > MAX_COCO_BYTES:
            raise UnetsegError(f"{path}: a COCO json of {path.stat().st_size >> 20} MB is over "
                               f"{MAX_COCO_BYTES >> 20} MB")
        data = json.loads(path.read_bytes())
    except OSError as e:
        raise UnetsegError(f"{path}: cannot read the COCO json ({e.strerror or e})") from None
    except (ValueError, RecursionError) as e:
        raise UnetsegError(f"{path}: not a readable COCO json ({' '.join(str(e).split())[:120]})") from None
    if not isinstance(data, dict):
        raise UnetsegError(f"{path}: a COCO json is an object with images, annotations and categories, not a "
                           f"{type(data).__name__}")
    try:
        checked = (schema or CocoFile).model_validate(data)
    except ValidationError as e:
        raise schema_error(e, f"{path}: COCO json") from None
    _check_entries(checked, path)
    return data


def _check_entries(coco: Any, path: Path) -> None:
    from unetseg.data.schema import MAX_COCO_PIXELS, MAX_POLYGON_VALUES, CocoRle, rle_string_counts

    images = {}
    for img in coco.images:
        if img.id in images:
            raise UnetsegError(f"{path}: image id {img.id} is given twice")
        if img.height * img.width > MAX_COCO_PIXELS:
            raise UnetsegError(f"{path}: image {img.file_name} declares {img.width}x{img.height} pixels, over the "
                               f"{MAX_COCO_PIXELS} a mask is drawn at")
        images[img.id] = img
    categories = {c.id for c in coco.categories}
    if len(categories) != len(coco.categories):
        raise UnetsegError(f"{path}: two categories share an id")
    for ann in coco.annotations if "annotations" in type(coco).model_fields else []:
        where = f"{path}: annotation {ann.id}"
        img = images.get(ann.image_id)
        if img is None:
            raise UnetsegError(f"{where}: image_id {ann.image_id} is not an image of the file")
        if ann.category_id not in categories:
            raise UnetsegError(f"{where}: category_id {ann.category_id} is not a category of the file")
        seg = ann.segmentation
        if isinstance(seg, CocoRle):
            if seg.size != [img.height, img.width]:
                raise UnetsegError(f"{where}: RLE size {seg.size} is not its image's [height, width] "
                                   f"[{img.height}, {img.width}]")
            try:
                counts = seg.counts if isinstance(seg.counts, list) else rle_string_counts(seg.counts)
            except ValueError as e:
                raise UnetsegError(f"{where}: bad RLE ({e})") from None
            if sum(counts) != img.height * img.width or any(c < 0 for c in counts):
                raise UnetsegError(f"{where}: RLE counts sum to {sum(counts)}, not the image's "
                                   f"{img.height * img.width} pixels (or hold a negative run)")
            continue
        values = sum(len(poly) for poly in seg)
        if values > MAX_POLYGON_VALUES:
            raise UnetsegError(f"{where}: {values // 2} polygon points, over {MAX_POLYGON_VALUES // 2}")
        for poly in seg:
            xy = np.asarray(poly, np.float64)
            if len(xy) % 2:
                raise UnetsegError(f"{where}: a polygon of {len(xy)} coordinates (x, y pairs are even)")
            x, y = xy[0::2], xy[1::2]
            if x.min() < -img.width or x.max() > 2 * img.width or y.min() < -img.height or y.max() > 2 * img.height:
                raise UnetsegError(f"{where}: polygon coordinates lie far outside its {img.width}x{img.height} image")


def _load(path: Path) -> Any:
    import contextlib
    import io

    from pycocotools.coco import COCO

    data = read_coco_json(path)
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco = COCO()
        coco.dataset = data
        coco.createIndex()
    return coco


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
