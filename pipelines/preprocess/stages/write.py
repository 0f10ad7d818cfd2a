"""Write: good rows to `data/`, rejected rows to `quarantine/`, then a completion marker.

Each batch becomes one part file per dataset, named by a digest of its sample ids, written to a
temporary name and moved into place. The marker, written last, is what makes the batch's
sources count as done: a part without a marker is an interrupted write, deleted on the next run
(see `OutputState`), so a re-run never duplicates rows.
"""

from __future__ import annotations

import hashlib
import json
import os

import pyarrow as pa
import pyarrow.fs as pa_fs
import pyarrow.parquet as pq

from pipelines.preprocess.schema import DATASET_SCHEMA, QUARANTINE_SCHEMA
from videomaker.storage import resolve

DATA_DIR, QUARANTINE_DIR, MARKER_DIR = "data", "quarantine", "_markers"

SUMMARY_SCHEMA = pa.schema([
    pa.field("sample_id", pa.string()),
    pa.field("source_uri", pa.string()),
    pa.field("status", pa.string()),
    pa.field("timings_json", pa.string()),
])


def _write_atomically(fs: pa_fs.FileSystem, path: str, write) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with fs.open_output_stream(tmp) as stream:
        write(stream)
    if isinstance(fs, pa_fs.LocalFileSystem):
        with open(tmp, "rb+") as f:  # durable before it becomes visible
            os.fsync(f.fileno())
    fs.move(tmp, path)


class WriteStage:
    """Task-based writer; returns one summary row per source for progress and the run summary."""

    def __init__(self, *, output_dir: str):
        self.output_dir = output_dir

    def __call__(self, batch: pa.Table) -> pa.Table:
        fs, root = resolve(self.output_dir)
        rows = batch.to_pylist()
        key = hashlib.sha256("\n".join(sorted(r["sample_id"] for r in rows)).encode()).hexdigest()[:20]
        good = [r for r in rows if r["reason_code"] is None]
        bad = [r for r in rows if r["reason_code"] is not None]
        for rows_, directory, schema in ((good, DATA_DIR, DATASET_SCHEMA), (bad, QUARANTINE_DIR, QUARANTINE_SCHEMA)):
            if rows_:
                table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows_], schema=schema)
                fs.create_dir(f"{root}/{directory}", recursive=True)
                _write_atomically(fs, f"{root}/{directory}/part-{key}.parquet", lambda s, t=table: pq.write_table(t, s))
        marker = {
            "part": f"part-{key}.parquet",
            "sources": {
                r["sample_id"]: {
                    "status": r["reason_code"] or "ok",
                    "retryable": bool(r["retryable"]) if r["reason_code"] else False,
                    "attempt": r["attempt"],
                }
                for r in rows
            },
        }
        fs.create_dir(f"{root}/{MARKER_DIR}", recursive=True)
        _write_atomically(fs, f"{root}/{MARKER_DIR}/part-{key}.json", lambda s: s.write(json.dumps(marker).encode()))
        return pa.Table.from_pylist(
            [
                {"sample_id": r["sample_id"], "source_uri": r["source_uri"], "status": r["reason_code"] or "ok",
                 "timings_json": r["timings_json"]}
                for r in rows
            ],
            schema=SUMMARY_SCHEMA,
        )


class OutputState:
    """What earlier runs finished, read from the markers; orphaned parts are removed on load."""

    def __init__(self, output_dir: str):
        self.fs, self.root = resolve(output_dir)
        self.sources: dict[str, dict] = {}
        markers = self._list(MARKER_DIR, ".json")
        for path in markers:
            with self.fs.open_input_stream(path) as f:
                marker = json.loads(f.read())
            for sample_id, status in marker["sources"].items():
                # A retried source appears in several markers; its latest attempt counts.
                if status["attempt"] > self.sources.get(sample_id, {"attempt": 0})["attempt"]:
                    self.sources[sample_id] = status
        finished = {p.rsplit("/", 1)[-1].removesuffix(".json") + ".parquet" for p in markers}
        for directory in (DATA_DIR, QUARANTINE_DIR):
            for path in self._list(directory, ""):
                name = path.rsplit("/", 1)[-1]
                if name not in finished:  # interrupted write or leftover temp file
                    self.fs.delete_file(path)

    def _list(self, directory: str, suffix: str) -> list[str]:
        selector = pa_fs.FileSelector(f"{self.root}/{directory}", allow_not_found=True)
        return sorted(i.path for i in self.fs.get_file_info(selector) if i.is_file and i.path.endswith(suffix))

    def is_done(self, sample_id: str, *, retry_quarantined: bool) -> bool:
        status = self.sources.get(sample_id)
        if status is None:
            return False
        return not (retry_quarantined and status["status"] != "ok" and status["retryable"])

    def attempt(self, sample_id: str) -> int:
        status = self.sources.get(sample_id)
        return 1 if status is None else status["attempt"] + 1
