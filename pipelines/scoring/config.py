"""Configuration of a scoring run; the metric backends default to the published ones."""

from __future__ import annotations

from dataclasses import dataclass, field

from metrics.backends import MetricBackendsConfig
from pipelines.actor_pool import ActorPoolConfig


@dataclass
class ScoringConfig:
    """Score every video a manifest names (SPEC section 7) and aggregate per method and set.

    Args:
        manifest: CSV, JSONL or Parquet with `video`, `subject_id`, `prompt`, `reference` and
            optional `set`, `subject_class`, `method`, `seed` columns.
        output_dir: Where `records.parquet`, `records.csv`, `aggregates.json` and `aggregates.csv` go.
        videos_dir: Relative `video` paths are read from here (default: the manifest's folder).
        expected_frames: Frames each video must have; other counts are recorded as errors.
            None scores whatever each file holds.
        backends: Which model computes which metric, and their weights.
        scorers: The actor pool of scorers; each loads every backend once.
    """

    manifest: str
    output_dir: str
    videos_dir: str | None = None
    expected_frames: int | None = 16
    backends: MetricBackendsConfig = field(default_factory=MetricBackendsConfig)
    scorers: ActorPoolConfig = field(default_factory=lambda: ActorPoolConfig(num_cpus=0.5, batch_size=4))

    def __post_init__(self):
        if self.expected_frames is not None and self.expected_frames < 2:
            raise ValueError(f"Invalid ScoringConfig(expected_frames={self.expected_frames}): need >= 2 or None.")
