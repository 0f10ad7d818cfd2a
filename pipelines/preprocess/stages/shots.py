"""Shots: where the source cuts between scenes, so that no clip and no reference crosses a cut."""

from pipelines.preprocess.shots import detect_cuts
from pipelines.preprocess.stages.base import RowStage, library_threads
from pipelines.preprocess.video import read_bytes


class ShotsStage(RowStage):
    name = "shots"

    def __init__(self, *, detector: str, threshold: float, min_shot_frames: int) -> None:
        self.detector = detector
        self.threshold = threshold
        self.min_shot_frames = min_shot_frames

    def process(self, row: dict) -> None:
        if self.detector == "none":
            row["shot_cuts"] = []
            return
        cuts, decoded = detect_cuts(
            read_bytes(row["source_uri"]),
            row["source_uri"],
            threshold=self.threshold,
            min_shot_frames=self.min_shot_frames,
            threads=library_threads(),
        )
        # The decoder's count is the truth where a container's frame count is an estimate.
        row.update(shot_cuts=cuts, source_num_frames=decoded)
