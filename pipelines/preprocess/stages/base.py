"""The shape every preprocessing stage shares: rows in, rows out, failures recorded, never raised.

A stage works on a pyarrow batch in `schema.WORKING_SCHEMA`. Rows already rejected pass through
untouched; a row this stage rejects keeps its reason, stage and message so the writer can put it
in quarantine. One bad video never fails the batch, so nothing good is lost with it.

Inside a Ray worker a stage runs OpenCV and FFmpeg on as many threads as the CPUs Ray gave the task
(see `library_threads`).
"""

from __future__ import annotations

import json
import logging
import os
import time

import cv2
import pyarrow as pa

from pipelines.preprocess.schema import REASONS, WORKING_SCHEMA
from pipelines.preprocess.video import Rejected

logger = logging.getLogger(__name__)


def reject(row: dict, stage: str, reason: str, message: str) -> None:
    if reason not in REASONS:
        raise ValueError(f"Unknown quarantine reason {reason!r}; known: {sorted(REASONS)}.")
    row.update(stage=stage, reason_code=reason, message=message, retryable=REASONS[reason][1])


def library_threads() -> int:
    """Threads for OpenCV and FFmpeg in this process: OMP_NUM_THREADS, else 0 (the libraries' default).

    Ray sets OMP_NUM_THREADS in each worker to the CPUs of its task (at least 1) and runs several
    fractional-CPU tasks per core. OpenCV and FFmpeg ignore it and start a thread per core in every
    worker: on 2 cores that cost the preprocess pipeline 30% more CPU (bench/RESULTS.md). A plain
    process (a loop, a notebook) leaves it unset and keeps the libraries' defaults.
    """
    return max(0, int(os.environ.get("OMP_NUM_THREADS") or 0))


class RowStage:
    """Subclasses set `name` and implement `process(row)`, raising `Rejected` for bad input.

    `process` updates the row in place, or returns the rows it turns into (one per clip of a source).
    """

    name = "stage"

    def process(self, row: dict) -> list[dict] | None:
        raise NotImplementedError

    def __call__(self, batch: pa.Table) -> pa.Table:
        return StageChain([self])(batch)

    def run(self, rows: list[dict]) -> list[dict]:
        """The rows after this stage; rows rejected earlier pass through untouched."""
        out = []
        for row in rows:
            if row["reason_code"] is not None:
                out.append(row)
                continue
            start = time.perf_counter()
            produced = None
            try:
                produced = self.process(row)
            except Rejected as rejection:
                reject(row, self.name, rejection.reason, rejection.message)
            except Exception as err:  # one bad sample must not fail the whole batch
                logger.exception("Stage %s failed on %s", self.name, row["source_uri"])
                reject(row, self.name, "internal_error", f"{type(err).__name__}: {err}")
            seconds = time.perf_counter() - start
            for item in produced if produced is not None else [row]:
                timings = json.loads(item.get("timings_json") or "{}")
                timings[self.name] = timings.get(self.name, 0.0) + seconds / len(produced or [row])
                item["timings_json"] = json.dumps(timings)
                item["finished_at"] = time.time()  # the last stage's stamp is when the row was done
                out.append(item)
        return out


class StageChain:
    """Stages that run in one task, one after another, converting Arrow to rows and back once.

    Ray Data fuses consecutive `map_batches` into one task, but still hands each stage an Arrow
    batch: with ~60 columns that conversion cost more than probing a missing file. A chain keeps
    the rows as Python dicts between its stages.
    """

    def __init__(self, stages: list[RowStage]) -> None:
        self.stages = list(stages)

    @property
    def name(self) -> str:
        return "+".join(stage.name for stage in self.stages)

    def __call__(self, batch: pa.Table) -> pa.Table:
        if threads := library_threads():
            cv2.setNumThreads(threads)
        out = []
        for row in batch.to_pylist():  # one source through every stage before the next: one at a time in memory
            rows = [row]
            for stage in self.stages:
                rows = stage.run(rows)
            out += rows
        return pa.Table.from_pylist(out, schema=WORKING_SCHEMA)
