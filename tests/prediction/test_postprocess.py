"""Tests of ``unetseg.prediction.postprocess``."""

from __future__ import annotations

import numpy as np

from unetseg.prediction.postprocess import (
    PostProcess,
    fill_holes,
    mask_to_polygons,
    postprocess_mask,
    remove_small_components,
)


def test_small_components_and_holes() -> None:
    fg = np.zeros((10, 10), bool)
    fg[1:6, 1:6] = True
    fg[3, 3] = False  # a hole
    fg[8, 8] = True  # a speck
    cleaned = postprocess_mask(fg.astype(np.uint8), PostProcess(min_size=3, fill_holes=True), binary=True)
    assert cleaned[3, 3] == 1 and cleaned[8, 8] == 0 and cleaned.sum() == 25
    assert remove_small_components(fg, 2).sum() == fg.sum() - 1
    assert fill_holes(fg).sum() == fg.sum() + 1


def test_multiclass_small_regions_take_the_surrounding_class() -> None:
    mask = np.full((9, 9), 2, np.uint8)
    mask[4, 4] = 1
    out = postprocess_mask(mask, PostProcess(min_size=2), binary=False)
    assert (out == 2).all()


def test_polygons_with_holes() -> None:
    mask = np.zeros((12, 12), np.uint8)
    mask[2:10, 2:10] = 1
    mask[5:7, 5:7] = 0
    objects = mask_to_polygons(mask, ["background", "call"], binary=True)
    assert len(objects) == 1 and objects[0]["class"] == "call"
    assert len(objects[0]["holes"]) == 1
    assert objects[0]["area"] == 8 * 8 - 2 * 2
