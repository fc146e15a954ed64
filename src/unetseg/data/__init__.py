"""Data: dataset discovery, image and mask reading, geometry, augmentation."""

from .io import IGNORE, MaskDecoder, read_image, read_mask_raw
from .spec import DatasetInfo, Pair, load_dataset

__all__ = ["IGNORE", "DatasetInfo", "MaskDecoder", "Pair", "load_dataset", "read_image", "read_mask_raw"]
