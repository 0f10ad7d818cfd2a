"""Configuration of a scoring run; the metric backends default to the published ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from metrics.backends import MetricBackendsConfig
from metrics.io import GIF_FRAMES
from metrics.suite import FACE_PROTOCOLS
from pipelines.actor_pool import ActorPoolConfig


@dataclass
class ScoringConfig:
    """Score every video a manifest names (docs/method.md, section 7) and aggregate per method and set.

    Args:
        manifest: CSV, JSONL or Parquet with `video`, `subject_id`, `prompt`, `reference` and
            optional `set`, `subject_class`, `method`, `seed`, `dd_video`, `face_cur_reference` columns. `video` is
            what CLIP-T, CLIP-I, DINO-I, T.Cons and Face Sim read (best: lossless frames),
            `dd_video` what DD reads (the GIF, as published); without it DD reads `video`.
            `face_cur_reference` the image FaceSim-Cur compares with (empty: `reference`; `none`: not computed).
        output_dir: Where `records.parquet`, `records.csv`, `aggregates.json` and `aggregates.csv` go.
        videos_dir: Relative `video` paths are read from here (default: the manifest's folder).
        expected_frames: Frames each video must have; other counts are recorded as errors.
            None scores whatever each file holds.
        backends: Which model computes which metric, and their weights.
        scorers: The actor pool of scorers; each loads every backend once.
        face_protocol: Face Sim protocol: `paper` (the author's steps, comparable with the
            published tables) or `corrected` (BGR, largest face; default). Recorded per video.
        dd_gif_frames: How DD reads a GIF whose identical consecutive frames were merged:
            `expand` (back to `expected_frames` by duration; default) or `decoded` (as decoded,
            what the author's DD script iterated over). Recorded per video.
        metric_groups: Metric groups to compute: the paper's six (`paper`, always) plus opt-in
            `vbench` (temporal flickering, I2V subject) and `opens2v` (motion amplitude; aesthetics,
            FaceSim-Cur and NaturalScore with `backends.aesthetic` / `backends.face_cur` /
            `backends.natural`). docs/metrics_opens2v.md.
        score_cache: Keep each video's scores per unit, backend and protocol, and reuse them: adding a
            metric group computes only its metrics, new weights for one backend recompute only its
            metrics, a re-run with nothing new calls no model (`metrics.score_cache`). Default True.
        score_cache_dir: Where that cache lives (default `<output_dir>/cache`); point several runs
            at one folder to share it.
        mlflow_tracking_uri: MLflow backend (sqlite:///... or http://...) for a run with the
            aggregates as metrics, the tables and config as artifacts and the manifest as its input
            dataset; None (default) logs nothing.
        mlflow_experiment: Experiment of the scoring runs.
        run_name: Name of the MLflow run (default: MLflow's).
    """

    manifest: str
    output_dir: str
    videos_dir: str | None = None
    expected_frames: int | None = 16
    backends: MetricBackendsConfig = field(default_factory=MetricBackendsConfig)
    scorers: ActorPoolConfig = field(default_factory=lambda: ActorPoolConfig(num_cpus=0.5, batch_size=4))
    face_protocol: Literal[FACE_PROTOCOLS] = "corrected"
    dd_gif_frames: Literal[GIF_FRAMES] = "expand"
    metric_groups: tuple[str, ...] = ("paper",)
    score_cache: bool = True
    score_cache_dir: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "videomaker-score"
    run_name: str | None = None

    def __post_init__(self):
        from metrics.suite import check_groups

        self.metric_groups = check_groups(self.metric_groups)
        if self.expected_frames is not None and self.expected_frames < 2:
            raise ValueError(f"Invalid ScoringConfig(expected_frames={self.expected_frames}): need >= 2 or None.")

    def score_cache_location(self) -> str | None:
        """The score cache folder this run reads and adds to, or None with `score_cache: false`."""
        from videomaker import storage

        if not self.score_cache:
            return None
        return self.score_cache_dir or storage.join(self.output_dir, "cache")
