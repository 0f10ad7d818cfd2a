"""Segmentation: the subject's mask on the chosen reference frame, prompted by the detected box."""

from functools import partial

from pipelines.preprocess.backends import make_segmenter
from pipelines.preprocess.backends.base import Box
from pipelines.preprocess.config import BackendConfig
from pipelines.preprocess.images import encode_png, frame_from_bytes
from pipelines.preprocess.stages.base import RowStage
from pipelines.preprocess.video import Rejected


MIN_MASK_PIXELS = 16
MIN_MASK_BOX_SHARE = 0.02


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
        box = Box(*row["box"])
        mask = self.segmenter.segment(image, box)
        pixels = int(mask.sum())
        # A mask of a few pixels is noise, not a subject: a reference made from it would be all white.
        least = max(MIN_MASK_PIXELS, round(MIN_MASK_BOX_SHARE * box.width * box.height))
        if pixels < least:
            raise Rejected(
                "empty_mask",
                f"{row['source_uri']}: the segmenter's mask for box {[round(v, 1) for v in row['box']]} has {pixels} "
                f"pixels; a subject needs >= {least} ({MIN_MASK_BOX_SHARE:.0%} of the box, at least {MIN_MASK_PIXELS}).",
            )
        row.update(
            mask_png=encode_png(mask.astype("uint8") * 255),
            segmenter=self.segmenter.name,
            segmenter_version=self.segmenter.version,
        )
