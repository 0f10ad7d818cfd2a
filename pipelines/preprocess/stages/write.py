"""Write: the one stateful stage. Collects each shard's rows, stages them, commits whole shards.

It runs as a single actor (the order of its calls is what makes a shard complete) on the driver's
node. Its work is writing files; the stages before it do the computing. See `output.py` for the
layout and the commit protocol.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from pipelines.preprocess.output import commit_shard, stage_rows
from videomaker.storage import resolve

SUMMARY_SCHEMA = pa.schema(
    [
        pa.field("sample_id", pa.string()),
        pa.field("source_uri", pa.string()),
        pa.field("clip_index", pa.int32()),
        pa.field("status", pa.string()),
        pa.field("shard", pa.int64()),
        pa.field("committed", pa.bool_()),
        pa.field("finished_at", pa.float64()),
        pa.field("timings_json", pa.string()),
    ]
)


@dataclass
class _OpenShard:
    pending: int
    digest: str
    generation: int
    previous: str | None
    reopened: bool
    received: dict = field(default_factory=dict)  # source id -> its sample ids received
    expected: dict = field(default_factory=dict)  # source id -> rows it makes
    rows: list = field(default_factory=list)  # tables not yet staged

    def done_sources(self) -> int:
        return sum(1 for s, ids in self.received.items() if len(ids) >= self.expected[s])


class WriteStage:
    """Returns one summary row per row written, for progress and the run summary.

    A timer thread stages rows that have waited `flush_interval_s`, whether or not more rows arrive.
    """

    def __init__(self, *, output_dir: str, flush_interval_s: float) -> None:
        self.output_dir = output_dir
        self.flush_interval_s = flush_interval_s
        self.open: dict[int, _OpenShard] = {}
        self.lock = threading.Lock()
        self.oldest: float | None = None  # monotonic time of the oldest row not yet durable
        threading.Thread(target=self._flush_when_due, daemon=True).start()

    def _flush_when_due(self) -> None:
        while True:
            time.sleep(min(1.0, self.flush_interval_s / 4))
            with self.lock:
                if self.oldest is not None and time.monotonic() - self.oldest >= self.flush_interval_s:
                    self._flush()

    def _flush(self) -> None:
        fs, root = resolve(self.output_dir)
        for shard, state in self.open.items():
            if state.rows:
                stage_rows(fs, root, shard, state.generation, state.digest, pa.concat_tables(state.rows))
                state.rows = []
        self.oldest = None

    def __call__(self, batch: pa.Table) -> pa.Table:
        with self.lock:
            committed = self._add(batch)
        return pa.table(
            {
                "sample_id": batch.column("sample_id"),
                "source_uri": batch.column("source_uri"),
                "clip_index": batch.column("clip_index"),
                "status": pc.fill_null(batch.column("reason_code"), "ok"),
                "shard": batch.column("shard"),
                "committed": pa.array([s in committed for s in batch.column("shard").to_pylist()]),
                "finished_at": batch.column("finished_at"),
                "timings_json": batch.column("timings_json"),
            },
            schema=SUMMARY_SCHEMA,
        )

    def _add(self, batch: pa.Table) -> set[int]:
        fs, root = resolve(self.output_dir)
        committed = set()
        for shard in pc.unique(batch.column("shard")).to_pylist():
            rows = batch.filter(pc.equal(batch.column("shard"), shard))
            first = rows.slice(0, 1).to_pylist()[0]
            state = self.open.setdefault(
                shard,
                _OpenShard(
                    first["shard_pending"],
                    first["shard_digest"],
                    first["shard_generation"],
                    first["shard_previous"],
                    bool(first["shard_reopened"]),
                ),
            )
            state.rows.append(rows)
            for source_id, sample_id, clips in zip(
                rows.column("source_id").to_pylist(), rows.column("sample_id").to_pylist(), rows.column("source_clips").to_pylist()
            ):
                state.received.setdefault(source_id, set()).add(sample_id)
                state.expected[source_id] = clips or 1
            if state.done_sources() >= state.pending:
                self._commit(fs, root, shard, state)
                committed.add(shard)
        if self.oldest is None and any(state.rows for state in self.open.values()):
            self.oldest = time.monotonic()
        return committed

    def _commit(self, fs, root, shard: int, state: _OpenShard) -> None:
        commit_shard(
            fs,
            root,
            shard=shard,
            digest=state.digest,
            generation=state.generation,
            current=state.rows,
            previous=state.previous,
            keep_previous_rows=state.reopened,
        )
        del self.open[shard]
