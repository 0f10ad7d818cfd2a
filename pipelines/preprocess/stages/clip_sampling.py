"""Clip sampling: up to `max_clips` clips inside the source's shots, and each clip's reference candidates."""

import dataclasses
import json

from pipelines.preprocess.sampling import plan_clips
from pipelines.preprocess.shots import shots_from_cuts
from pipelines.preprocess.stages.base import RowStage
from pipelines.preprocess.video import Rejected


class ClipSamplingStage(RowStage):
    name = "clip_sampling"

    def __init__(
        self, *, num_frames: int, stride: int, candidates: int, seed: int, max_clips: int = 1, span_frames: int | None = None
    ) -> None:
        self.options = dict(
            num_frames=num_frames, stride=stride, candidates=candidates, seed=seed, max_clips=max_clips, span_frames=span_frames
        )

    def process(self, row: dict) -> None:
        shots = shots_from_cuts(row["shot_cuts"] or [], row["source_num_frames"])
        plans = plan_clips(row["sample_id"], shots, **self.options)
        if not plans:
            lengths = [end - start for start, end in shots]
            raise Rejected(
                "too_short",
                f"{row['source_uri']} has no shot of {self.options['num_frames']} frames for a clip "
                f"(shot lengths in frames: {lengths[:10]}{' ...' if len(lengths) > 10 else ''}).",
            )
        row.update(source_num_shots=len(shots), clip_plans_json=json.dumps([dataclasses.asdict(p) for p in plans]))
