"""Clip sampling: the clip's frames and the reference candidates, seeded by the sample id."""

from pipelines.preprocess.sampling import plan_clip
from pipelines.preprocess.stages.base import RowStage


class ClipSamplingStage(RowStage):
    name = "clip_sampling"

    def __init__(self, *, num_frames: int, stride: int, candidates: int, seed: int):
        self.options = dict(num_frames=num_frames, stride=stride, candidates=candidates, seed=seed)

    def process(self, row: dict) -> None:
        plan = plan_clip(row["sample_id"], row["source_num_frames"], **self.options)
        row.update(
            frame_indices=plan.frame_indices,
            stride=plan.stride,
            reference_candidates=plan.reference_candidates,
            reference_away_from_clip=plan.reference_away_from_clip,
        )
