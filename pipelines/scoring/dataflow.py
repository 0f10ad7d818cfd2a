"""Score a manifest on Ray Data: requests stream through an actor pool of scorers into records.

Each scorer actor loads every backend once and keeps reference and prompt embeddings cached;
requests are sorted by reference so a batch mostly shares one.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import ray
from tqdm.auto import tqdm

from metrics.aggregate import aggregate
from metrics.backends import MetricBackendsConfig
from metrics.records import ScoreRequest, records_for_csv, records_table
from pipelines.actor_pool import ActorPoolConfig
from pipelines.cluster import connect_or_start_ray
from pipelines.scoring.config import ScoringConfig
from pipelines.scoring.manifest import read_score_manifest
from videomaker import storage

logger = logging.getLogger(__name__)


class ScoreBatch:
    """Ray Data callable class: request rows in, one record row per request out.

    The `row` column (the request's manifest position) passes through so the driver can put the
    records back in manifest order.
    """

    def __init__(
        self,
        backends: MetricBackendsConfig,
        expected_frames: int | None,
        face_protocol: str = "corrected",
        dd_gif_frames: str = "expand",
        metric_groups: tuple[str, ...] = ("paper",),
        cache_dir: str | None = None,
    ) -> None:
        from metrics.backends import load_backends
        from metrics.score_cache import ScoreCache
        from metrics.suite import MetricSuite

        self.suite = MetricSuite(load_backends(backends), face_protocol=face_protocol, groups=tuple(metric_groups))
        self.expected_frames = expected_frames
        self.dd_gif_frames = dd_gif_frames
        self.cache = ScoreCache.open(cache_dir) if cache_dir else None

    def __call__(self, batch: pa.Table) -> pa.Table:
        from metrics.records import score_requests

        positions = batch.column("row")
        requests = [ScoreRequest(**row) for row in batch.drop_columns(["row"]).to_pylist()]
        records = records_table(
            score_requests(self.suite, requests, expected_frames=self.expected_frames, dd_gif_frames=self.dd_gif_frames, cache=self.cache)
        )
        if self.cache is not None:
            self.cache.flush()  # per batch: an interrupted run keeps what it scored
        return records.append_column("row", positions)


@dataclass
class ScoringResult:
    records: list[dict]
    aggregates: list[dict]
    output_dir: str
    wall_s: float


def score_videos(
    requests: list[ScoreRequest],
    *,
    backends: MetricBackendsConfig,
    scorers: ActorPoolConfig,
    expected_frames: int | None = 16,
    face_protocol: str = "corrected",
    dd_gif_frames: str = "expand",
    metric_groups: tuple[str, ...] = ("paper",),
    cache_dir: str | None = None,
    progress: bool = True,
) -> list[dict]:
    """The records of `requests`, in their order, scored on the running (or a local) Ray cluster.

    Args:
        face_protocol: `paper` or `corrected` Face Sim (see `metrics.suite`); every record says which.
        dd_gif_frames: How DD reads a GIF whose identical frames merged (see `metrics.records.score_requests`).
        metric_groups: Opt-in metric groups beside the paper's six (`metrics.suite.METRIC_GROUPS`).
        cache_dir: Score cache folder (`metrics.score_cache`): units already scored with the same
            inputs, backends and protocol are read from it, the rest computed and added. None: no cache.
    """
    from metrics.io import GIF_FRAMES
    from metrics.suite import FACE_PROTOCOLS, check_groups

    if face_protocol not in FACE_PROTOCOLS:  # refused here, before any actor starts
        raise ValueError(f"`face_protocol` must be one of {list(FACE_PROTOCOLS)}, got {face_protocol!r}.")
    if dd_gif_frames not in GIF_FRAMES:
        raise ValueError(f"`dd_gif_frames` must be one of {list(GIF_FRAMES)}, got {dd_gif_frames!r}.")
    from metrics.score_cache import compact

    metric_groups = check_groups(metric_groups)
    if cache_dir:
        cache_dir = storage.absolute(cache_dir)
        compact(cache_dir)  # few parts for every actor to read, whatever an interrupted run left
    connect_or_start_ray()
    order = sorted(range(len(requests)), key=lambda i: (requests[i].reference, requests[i].video))
    rows = [{"row": i, **asdict(requests[i])} for i in order]
    ds = ray.data.from_items(rows).map_batches(
        ScoreBatch,
        fn_constructor_kwargs={
            "backends": backends,
            "expected_frames": expected_frames,
            "face_protocol": face_protocol,
            "dd_gif_frames": dd_gif_frames,
            "metric_groups": metric_groups,
            "cache_dir": cache_dir,
        },
        batch_format="pyarrow",
        **scorers.map_batches_options(),
    )
    records: list[dict | None] = [None] * len(requests)
    with tqdm(total=len(requests), desc="score", unit="video", disable=not progress) as bar:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for record in batch.to_pylist():
                records[record.pop("row")] = record
                bar.update(1)
    if cache_dir:
        compact(cache_dir)
        cached = sum(bool(r["cached_units"]) for r in records)
        logger.info("Score cache %s: %d of %d videos reused cached units", cache_dir, cached, len(records))
    return records


def write_results(table: pa.Table, aggregates: list[dict], output_dir: str | Path, *, name: str = "records") -> None:
    """`<name>.parquet` / `<name>.csv` (one row per video) and aggregates.json / aggregates.csv."""

    def encoded(write, data) -> bytes:
        sink = pa.BufferOutputStream()
        write(data, sink)
        return sink.getvalue().to_pybytes()

    storage.write_bytes(storage.join(output_dir, f"{name}.parquet"), encoded(pq.write_table, table))
    storage.write_bytes(storage.join(output_dir, f"{name}.csv"), encoded(pacsv.write_csv, records_for_csv(table)))
    storage.write_text(storage.join(output_dir, "aggregates.json"), json.dumps(aggregates, indent=2))
    storage.write_bytes(storage.join(output_dir, "aggregates.csv"), encoded(pacsv.write_csv, pa.Table.from_pylist(aggregates)))


def run_scoring(config: ScoringConfig, *, progress: bool = True) -> ScoringResult:
    """Read the manifest, score every video, aggregate per (method, set), write the results."""
    started = time.perf_counter()
    storage.check_access(config.manifest, argument="`manifest`")
    if config.videos_dir:
        storage.check_access(config.videos_dir, argument="`videos_dir`")
    storage.check_access(config.output_dir, argument="`output_dir`", write=True)
    requests = read_score_manifest(config.manifest, config.videos_dir)
    logger.info("Scoring %d videos from %s", len(requests), config.manifest)
    records = score_videos(
        requests,
        backends=config.backends,
        scorers=config.scorers,
        expected_frames=config.expected_frames,
        face_protocol=config.face_protocol,
        dd_gif_frames=config.dd_gif_frames,
        metric_groups=config.metric_groups,
        cache_dir=config.score_cache_location(),
        progress=progress,
    )
    aggregates = aggregate(records)
    write_results(records_table(records), aggregates, config.output_dir)
    return ScoringResult(records, aggregates, config.output_dir, time.perf_counter() - started)
