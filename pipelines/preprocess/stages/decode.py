"""Decode: every clip's frames (JPEG) and reference candidates (raw pixels) at the target size, in one
pass, then one row per clip with its own sample id."""

import json

from pipelines.preprocess.images import encode_jpeg, frame_to_bytes
from pipelines.preprocess.sources import sample_id_for
from pipelines.preprocess.stages.base import RowStage, library_threads
from pipelines.preprocess.video import decode_frames, read_bytes


class DecodeStage(RowStage):
    name = "decode"

    def __init__(self, *, size: int, resize_policy: str) -> None:
        self.size = size
        self.resize_policy = resize_policy

    def process(self, row: dict) -> list[dict]:
        plans = json.loads(row["clip_plans_json"])
        wanted = sorted({i for p in plans for i in p["frame_indices"] + p["reference_candidates"]})
        frames = decode_frames(
            read_bytes(row["source_uri"]),
            row["source_uri"],
            wanted,
            size=self.size,
            policy=self.resize_policy,
            threads=library_threads(),
        )
        clips = []
        for plan in plans:
            clip = dict(
                row, clip_plans_json=None, source_clips=len(plans), width=self.size, height=self.size, resize_policy=self.resize_policy
            )
            clip.update(
                {
                    k: plan[k]
                    for k in (
                        "clip_index",
                        "frame_indices",
                        "stride",
                        "reference_candidates",
                        "reference_away_from_clip",
                        "shot_index",
                        "shot_start_frame",
                        "shot_end_frame",
                    )
                }
            )
            clip["sample_id"] = sample_id_for(row["source_id"], plan["clip_index"])
            clip["frames"] = [encode_jpeg(frames[i]) for i in plan["frame_indices"]]
            clip["candidate_frames"] = [frame_to_bytes(frames[i]) for i in plan["reference_candidates"]]
            clips.append(clip)
        return clips
