"""Decode: the clip's frames (JPEG) and the reference candidates (raw pixels) at the target size, one pass."""

from pipelines.preprocess.images import encode_jpeg, frame_to_bytes
from pipelines.preprocess.stages.base import RowStage, library_threads
from pipelines.preprocess.video import decode_frames, read_bytes


class DecodeStage(RowStage):
    name = "decode"

    def __init__(self, *, size: int, resize_policy: str):
        self.size = size
        self.resize_policy = resize_policy

    def process(self, row: dict) -> None:
        wanted = row["frame_indices"] + row["reference_candidates"]
        frames = decode_frames(
            read_bytes(row["source_uri"]), row["source_uri"], wanted, size=self.size, policy=self.resize_policy,
            threads=library_threads(),
        )
        row.update(
            frames=[encode_jpeg(frames[i]) for i in row["frame_indices"]],
            candidate_frames=[frame_to_bytes(frames[i]) for i in row["reference_candidates"]],
            width=self.size,
            height=self.size,
            resize_policy=self.resize_policy,
        )
