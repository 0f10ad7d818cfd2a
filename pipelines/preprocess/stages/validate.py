"""Validate: refuse videos too short for a clip or too small to give usable frames."""

from pipelines.preprocess.stages.base import RowStage
from pipelines.preprocess.video import Rejected


class ValidateStage(RowStage):
    name = "validate"

    def __init__(self, *, num_frames: int, min_source_side: int) -> None:
        self.num_frames = num_frames
        self.min_source_side = min_source_side

    def process(self, row: dict) -> None:
        if row["source_num_frames"] < self.num_frames:
            raise Rejected(
                "too_short",
                f"{row['source_uri']} has {row['source_num_frames']} frames; a clip needs {self.num_frames}.",
            )
        short_side = min(row["source_width"], row["source_height"])
        if short_side < self.min_source_side:
            raise Rejected(
                "too_small",
                f"{row['source_uri']} is {row['source_width']}x{row['source_height']}; the short side must be "
                f">= {self.min_source_side} px (config `sources.min_side`).",
            )
