"""Probe: read the source once, hash it, and record codec, fps, frame count, size and duration."""

from pipelines.preprocess.stages.base import RowStage
from pipelines.preprocess.video import probe, read_bytes


class ProbeStage(RowStage):
    name = "probe"

    def __init__(self, *, supported_codecs: tuple[str, ...] | None = None) -> None:
        self.supported_codecs = frozenset(supported_codecs) if supported_codecs else None

    def process(self, row: dict) -> None:
        info = probe(read_bytes(row["source_uri"]), row["source_uri"], supported_codecs=self.supported_codecs)
        row.update(
            content_sha256=info.content_sha256,
            codec=info.codec,
            source_fps=info.fps,
            source_num_frames=info.num_frames,
            source_width=info.width,
            source_height=info.height,
            source_duration_s=info.duration_s,
        )
