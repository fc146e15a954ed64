"""The settings of post-processing (``PostProcess``), apart from the code that applies them
(``prediction.postprocess``, which needs OpenCV and torch): the command line builds its flags from them
without importing either."""

from __future__ import annotations

from dataclasses import dataclass

from unetseg.core.config import check_fields, option
from unetseg.instances.centres import PEAK_THRESHOLD

MAX_RADIUS = 256  # pixels: a structuring element of (2r+1)^2 is built per call


@dataclass(frozen=True)
class PostProcess:
    """Probabilities -> cleaned class mask: the threshold, then morphology. Each field is a flag."""

    threshold: float | None = option(None, "binary: foreground probability cut-off, between 0 and 1", metavar="P",
                                     default_text="the model's", gt=0.0, lt=1.0)
    open_px: int = option(0, "morphological opening radius in pixels", metavar="PX", flag="--open", ge=0,
                          le=MAX_RADIUS)
    close_px: int = option(0, "morphological closing radius in pixels", metavar="PX", flag="--close", ge=0,
                           le=MAX_RADIUS)
    min_size: int = option(0, "remove regions under N pixels", metavar="N", ge=0, le=2**40)
    fill_holes: bool = option(False, "fill holes inside regions")
    objects: str = option("auto", "what an object is (instance IDs, COCO results, instance AP): auto takes the "
                          "instance head's where the model has one, else each class's connected components; "
                          "components always the latter", ("auto", "components"))
    peak_threshold: float = option(PEAK_THRESHOLD, "instance head: the lowest centre-heatmap peak that counts as "
                                   "an object",
                                   metavar="P", ge=0.0, le=1.0)

    def __post_init__(self) -> None:
        check_fields(self)

    @property
    def active(self) -> bool:
        return bool(self.open_px or self.close_px or self.min_size or self.fill_holes)
