"""Data: dataset discovery, image and mask reading, geometry, augmentation."""

from unetseg.data.discover import DatasetInfo, Pair, load_dataset
from unetseg.data.images import IGNORE, MaskDecoder, read_image, read_mask_raw

__all__ = ["IGNORE", "DatasetInfo", "MaskDecoder", "Pair", "load_dataset", "read_image", "read_mask_raw"]
