"""Tests of ``unetseg.data.coco``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from tests.fixtures import run, shared
from unetseg.data.coco import mask_to_coco_results, rle_to_mask
from unetseg.data.discover import load_dataset


@pytest.fixture(autouse=True, scope="module")
def coco_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    mp = pytest.MonkeyPatch()
    mp.setenv("UNETSEG_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


def test_mask_to_rle_and_back() -> None:
    rng = np.random.default_rng(0)
    mask = np.zeros((40, 60), np.uint8)
    mask[5:15, 5:20] = 1
    mask[25:35, 10:12] = 1  # a second region of class 1
    mask[20:30, 30:55] = 2
    mask[rng.integers(0, 40, 5), rng.integers(0, 60, 5)] = 3
    results = mask_to_coco_results(mask, image_id=7, category_ids={1: 11, 2: 12, 3: 13})
    assert {r["image_id"] for r in results} == {7}
    assert sum(r["category_id"] == 11 for r in results) == 2
    rebuilt = np.zeros_like(mask)
    back = {11: 1, 12: 2, 13: 3}
    for r in results:
        region = rle_to_mask(r["segmentation"])
        assert region.sum() == r["area"]
        rebuilt[region] = back[r["category_id"]]
    assert np.array_equal(rebuilt, mask)


def test_paint_order_small_objects_on_top_and_crowd_regions(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(tmp_path / "a.jpg")
    crowd = mask_utils.encode(np.asfortranarray(np.pad(np.ones((5, 5), np.uint8), ((40, 5), (40, 5)))))
    crowd["counts"] = crowd["counts"].decode("ascii")
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 50, "width": 50}],
        "categories": [{"id": 1, "name": "facade"}, {"id": 2, "name": "window"}, {"id": 3, "name": "tree"}],
        "annotations": [  # the window comes first in the file but must end up on top of the facade
            {"id": 1, "image_id": 1, "category_id": 2, "segmentation": [[10, 10, 20, 10, 20, 20, 10, 20]],
             "area": 100, "bbox": [10, 10, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 35, 0, 35, 35, 0, 35]],
             "area": 1225, "bbox": [0, 0, 35, 35], "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 3, "segmentation": crowd, "area": 25, "bbox": [40, 40, 5, 5],
             "iscrowd": 1},
        ],
    }
    (tmp_path / "_annotations.coco.json").write_text(json.dumps(coco))
    yaml = tmp_path / "d.yaml"
    yaml.write_text("train: {coco: _annotations.coco.json, images: .}\nvalid: {coco: _annotations.coco.json, "
                    "images: .}\ncoco_classes: [window, {building: [facade]}, tree]\n")
    info = load_dataset(yaml)
    assert info.classes == ["background", "window", "building", "tree"]
    mask = np.asarray(Image.open(info.split("train")[0].mask))
    assert mask[15, 15] == 1 and mask[30, 30] == 2 and mask[42, 42] == 3 and mask[48, 2] == 0
    # Instance IDs beside the masks, painted in the same order; a crowd region is no object.
    from unetseg.data.images import read_instance_ids

    assert info.instances
    ids = read_instance_ids(info.split("train")[0].instances)
    assert ids[15, 15] == 2 and ids[30, 30] == 1 and ids[42, 42] == 0 and ids.max() == 2


def _square(x: int, y: int, w: int, h: int) -> list[list[int]]:
    return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def test_instance_ap_of_components_against_coco_instances(tmp_path: Path) -> None:
    """evaluate's instance scores on masks that equal the truth: separate windows are found whole (AP 1);
    two touching windows become one component, which matches only the larger one (recall 1/2 at IoU 0.5)."""
    from unetseg.data.images import read_mask_raw
    from unetseg.evaluation.evaluate_split import _InstanceScores

    images, annotations = [], []
    layouts = {"apart.png": [(4, 4, 6, 6), (20, 4, 10, 6)], "touching.png": [(4, 4, 6, 6), (10, 4, 10, 6)]}
    for i, (name, boxes) in enumerate(layouts.items(), start=1):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / name)
        images.append({"id": i, "file_name": name, "height": 32, "width": 32})
        for b in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": 5,
                                "segmentation": _square(*b), "area": b[2] * b[3], "bbox": list(b), "iscrowd": 0})
    coco = {"images": images, "categories": [{"id": 5, "name": "window"}], "annotations": annotations}
    (tmp_path / "test.json").write_text(json.dumps(coco))
    (tmp_path / "d.yaml").write_text("test: {coco: test.json, images: .}\n")
    info = load_dataset(tmp_path / "d.yaml", need_train=False)
    assert info.coco is not None and info.classes == ["background", "window"]

    def scores(names: list[str]) -> dict:
        pairs = [p for p in info.split("test") if p.image.name in names]
        instances = _InstanceScores(info, pairs)
        for pair in pairs:
            mask = info.decoder.decode(read_mask_raw(pair.mask), pair.mask)
            instances.add(pair, mask, mask, np.stack([mask == 0, mask == 1]).astype(np.float32), None, 0.3)
        return instances.scores()

    apart = scores(["apart.png"])
    assert (apart["truth_objects"], apart["predicted_objects"]) == (2, 2)
    assert apart["mask"]["ap"] == apart["box"]["ap"] == 1.0
    touching = scores(["touching.png"])
    assert (touching["truth_objects"], touching["predicted_objects"]) == (2, 1)
    assert touching["box"]["ap50"] == pytest.approx(51 / 101, abs=1e-4)
    assert touching["mask"]["ap50"] == pytest.approx(51 / 101, abs=1e-4)


@pytest.mark.slow
def test_coco_facade_train_evaluate_predict(tmp_path: Path, capsys) -> None:
    data = shared("coco-facade-mini")
    runs = tmp_path / "runs"
    # Objects as connected components (one epoch teaches the instance head too little to find any).
    code, _, err = run(["train", "--data", str(data), "--size", "128", "--arch", "classic", "--depth", "3",
                        "--base-width", "8", "--epochs", "1", "--batch-size", "8", "--no-progress", "--workers", "0",
                        "--runs-dir", str(runs), "--name", "facade", "--no-test", "--instances", "off"], capsys)
    assert code == 0, err
    model = runs / "facade" / "weights" / "best.safetensors"
    code, _, err = run(["evaluate", "--model", str(model), "--data", str(data), "--figures", "1", "--output",
                        str(tmp_path / "eval")], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["images"] == 40 and "window" in metrics["per_class"]
    instances = metrics["instances"]  # COCO truth: instance AP of the components, each score in [0, 1]
    assert instances["truth_objects"] > 0 and instances["predicted_objects"] > 0
    assert all(0.0 <= instances[kind][k] <= 1.0 for kind in ("mask", "box") for k in ("ap", "ap50", "ap75"))
    images = sorted((data / "test").glob("*.jpg"))[:2]
    out = tmp_path / "pred"
    code, _, err = run(["predict", "--model", str(model), "--input", str(data / "test" / "*.jpg"), "--output",
                        str(out), "--coco-results", str(tmp_path / "results.json"), "--coco-json",
                        str(data / "test" / "_annotations.coco.json"), "--batch-size", "8"], capsys)
    assert code == 0, err
    results = json.loads((tmp_path / "results.json").read_text())
    coco = json.loads((data / "test" / "_annotations.coco.json").read_text())
    ids = {img["file_name"]: img["id"] for img in coco["images"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    assert results and {r["image_id"] for r in results} <= set(ids.values())
    first = images[0]
    mask = np.asarray(Image.open(out / f"{first.stem}.png"))
    assert mask.shape == (1024, 1024)
    classes = json.loads((runs / "facade" / "dataset.json").read_text())["classes"]
    for r in (r for r in results if r["image_id"] == ids[first.name]):
        region = rle_to_mask(r["segmentation"])
        assert (mask[region] == classes.index(names[r["category_id"]])).all()
