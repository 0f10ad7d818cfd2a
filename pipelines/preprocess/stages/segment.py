"""Segmentation: the subject's mask on the chosen reference frame, prompted by the detected box."""

from functools import partial

from pipelines.preprocess.backends import make_segmenter
from pipelines.preprocess.backends.base import Box
from pipelines.preprocess.config import BackendConfig
from pipelines.preprocess.images import encode_png, frame_from_bytes
from pipelines.preprocess.stages.base import RowStage
from pipelines.preprocess.video import Rejected


class SegmentStage(RowStage):
    name = "segment"

    def __init__(self, *, segmenter: BackendConfig):
        self.config = segmenter
        self.segmenter = make_segmenter(segmenter.name, **segmenter.options)

    def __reduce__(self):
        # Backends hold native handles (OpenCV, torch) that are not worth pickling: a task rebuilds them.
        return partial(SegmentStage, segmenter=self.config), ()

    def process(self, row: dict) -> None:
        image = frame_from_bytes(row["reference_frame"], row["width"], row["height"])
        mask = self.segmenter.segment(image, Box(*row["box"]))
        if not mask.any():
            raise Rejected("empty_mask", f"{row['source_uri']}: the segmenter returned an empty mask for box {row['box']}.")
        row.update(
            mask_png=encode_png(mask.astype("uint8") * 255),
            segmenter=self.segmenter.name,
            segmenter_version=self.segmenter.version,
        )
