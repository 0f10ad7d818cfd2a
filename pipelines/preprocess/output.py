"""The output directory of a preprocessing run and how rows become durable in it.

Layout (`output_dir/`):
    data/part-SSSSSS-gG.parquet        the clips of shard S (sources S*N .. S*N+N-1 of the input)
    quarantine/part-SSSSSS-gG.parquet  the shard's rejected sources and clips, with reasons
    _markers/shard-SSSSSS-gG-D.json    the commit of generation G of shard S, whose sources digest to D
    _staging/shard-SSSSSS-gG-D/        finished rows of generation G of a shard still open (durable)
    _plan/shard-SSSSSS.parquet         the sources of an open shard still to process
    _layout.json                       sources per shard and config hash, fixed for the directory
    summary.json                       the last run's counts and throughput

Commit protocol. A shard's rows are buffered by the writer and flushed to `_staging/` every
`output.flush_interval_s`, so finished work survives a kill. When the last source of a shard is done its
part files are written (temporary name, fsync, rename), then its marker: the marker is the commit.
A part or marker of a generation newer than the committed one is an interrupted commit and is
deleted on the next run, with older generations and leftover staging and plans. Rows in a part are
sorted by (source id, clip), so a shard committed after a kill and a re-run is byte-identical to
the one an uninterrupted run writes.

Resume costs one listing of `_markers/` (names only) plus the staging of the shards still open:
nothing per source is held. A shard whose sources changed (a different digest) is processed again
and replaces the old generation.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pa_fs
import pyarrow.parquet as pq

from pipelines.preprocess.schema import DATASET_SCHEMA, QUARANTINE_SCHEMA, WORKING_SCHEMA
from videomaker.storage import atomic_write, is_partial, resolve

DATA_DIR, QUARANTINE_DIR, MARKER_DIR, STAGING_DIR, PLAN_DIR = "data", "quarantine", "_markers", "_staging", "_plan"
LAYOUT_FILE = "_layout.json"
_MARKER = re.compile(r"/shard-(\d+)-g(\d+)-([0-9a-f]+)\.json$")
_PART = re.compile(r"/part-(\d+)-g(\d+)\.parquet$")

# Columns kept in staging: whatever a data or a quarantine row needs, and how many rows its source makes.
_OUTPUT_COLUMNS = list(dict.fromkeys([f.name for f in DATASET_SCHEMA] + [f.name for f in QUARANTINE_SCHEMA] + ["source_clips"]))
STAGING_SCHEMA = pa.schema([WORKING_SCHEMA.field(name) for name in _OUTPUT_COLUMNS])


def shard_digest(sources: pa.Table) -> str:
    """Identity of a shard's sources, in order, with everything of theirs that shapes rows (URI,
    caption, class): a changed input changes it."""
    columns = [sources.column(c).to_pylist() for c in ("sample_id", "source_uri", "caption", "subject_class")]
    lines = ("\t".join(str(v) for v in row) for row in zip(*columns))
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def part_name(shard: int, generation: int) -> str:
    return f"part-{shard:06d}-g{generation}.parquet"


def marker_name(shard: int, generation: int, digest: str) -> str:
    return f"shard-{shard:06d}-g{generation}-{digest}.json"


def staging_dir(root: str, shard: int, generation: int, digest: str) -> str:
    return f"{root}/{STAGING_DIR}/shard-{shard:06d}-g{generation}-{digest}"


def plan_path(root: str, shard: int) -> str:
    return f"{root}/{PLAN_DIR}/shard-{shard:06d}.parquet"


def parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def _files(fs: pa_fs.FileSystem, folder: str) -> list[pa_fs.FileInfo]:
    return [i for i in fs.get_file_info(pa_fs.FileSelector(folder, allow_not_found=True)) if i.is_file]


def to_staging(rows: pa.Table) -> pa.Table:
    return rows.select(_OUTPUT_COLUMNS).cast(STAGING_SCHEMA)


def merge_rows(previous: pa.Table | None, current: list[pa.Table]) -> pa.Table:
    """A shard's final rows, sorted: `current` (staged and new rows; a row staged twice, by a run that
    was killed and the one that redid it, counts once), plus the sources of `previous` (a retried
    shard's committed rows) that `current` does not replace."""
    rows = pa.concat_tables([to_staging(t) for t in current]) if current else STAGING_SCHEMA.empty_table()
    ids = rows.column("sample_id").to_pylist()
    last = {sample_id: i for i, sample_id in enumerate(ids)}
    rows = rows.take(sorted(last.values()))
    if previous is not None and previous.num_rows:
        replaced = set(rows.column("source_id").to_pylist())
        keep = [s not in replaced for s in previous.column("source_id").to_pylist()]
        rows = pa.concat_tables([to_staging(previous).filter(pa.array(keep, pa.bool_())), rows])
    order = pc.sort_indices(rows, sort_keys=[("source_id", "ascending", "at_start"), ("clip_index", "ascending", "at_start")])
    return rows.take(order)


def split_parts(rows: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(data, quarantine) tables in their published schemas."""
    bad = pc.is_valid(rows.column("reason_code"))
    data = rows.filter(pc.invert(bad)).select([f.name for f in DATASET_SCHEMA]).cast(DATASET_SCHEMA)
    quarantine = rows.filter(bad).select([f.name for f in QUARANTINE_SCHEMA]).cast(QUARANTINE_SCHEMA)
    return data, quarantine


@dataclass(frozen=True)
class Commit:
    shard: int
    generation: int
    digest: str
    marker: str  # its path


class OutputState:
    """What earlier runs committed, read from marker names; interrupted commits are removed on load."""

    def __init__(self, output_dir: str) -> None:
        self.fs, self.root = resolve(output_dir)
        self.commits: dict[int, Commit] = {}
        stale = []
        for info in _files(self.fs, f"{self.root}/{MARKER_DIR}"):
            match = _MARKER.search(info.path)
            if not match:
                if is_partial(info.path):
                    stale.append(info.path)  # a temporary file of an interrupted marker write
                continue
            commit = Commit(int(match[1]), int(match[2]), match[3], info.path)
            old = self.commits.get(commit.shard)
            if old is None or commit.generation > old.generation:
                self.commits[commit.shard] = commit
                stale += [old.marker] if old else []
            else:
                stale.append(commit.marker)
        for directory in (DATA_DIR, QUARANTINE_DIR):
            for info in _files(self.fs, f"{self.root}/{directory}"):
                match = _PART.search(info.path)
                if not match:
                    if is_partial(info.path):
                        stale.append(info.path)  # an interrupted part write
                    continue  # not ours (e.g. a reader's _SUCCESS): left alone
                commit = self.commits.get(int(match[1]))
                if commit is None or int(match[2]) != commit.generation:
                    stale.append(info.path)
        for path in stale:
            self.fs.delete_file(path)

    def marker(self, shard: int) -> dict:
        with self.fs.open_input_stream(self.commits[shard].marker) as f:
            return json.loads(f.read())

    def staging(self) -> dict[int, list[tuple[int, str, str]]]:
        """Staging folders by shard: [(generation, digest, path)]; one listing of `_staging/`."""
        found: dict[int, list[tuple[int, str, str]]] = {}
        for info in self.fs.get_file_info(pa_fs.FileSelector(f"{self.root}/{STAGING_DIR}", allow_not_found=True)):
            match = re.search(r"shard-(\d+)-g(\d+)-([0-9a-f]+)$", info.path)
            if info.type == pa_fs.FileType.Directory and match:
                found.setdefault(int(match[1]), []).append((int(match[2]), match[3], info.path))
        return found

    def drop(self, shard: int) -> None:
        """Remove a committed shard (its input has fewer shards now)."""
        commit = self.commits.pop(shard)
        for path in [commit.marker] + [f"{self.root}/{d}/{part_name(shard, commit.generation)}" for d in (DATA_DIR, QUARANTINE_DIR)]:
            if self.fs.get_file_info(path).type == pa_fs.FileType.File:
                self.fs.delete_file(path)


def staged_rows(fs: pa_fs.FileSystem, root: str, shard: int, generation: int, digest: str, columns: list[str] | None = None) -> pa.Table:
    """Rows of a shard's generation already durable in staging (empty if none); `columns` to read only some."""
    schema = pa.schema([STAGING_SCHEMA.field(c) for c in columns]) if columns else STAGING_SCHEMA
    chunks = []
    for info in _files(fs, staging_dir(root, shard, generation, digest)):
        if info.path.endswith(".parquet"):
            with fs.open_input_file(info.path) as f:
                chunks.append(pq.read_table(f, columns=columns).cast(schema))
    return pa.concat_tables(chunks) if chunks else schema.empty_table()


def committed_rows(fs: pa_fs.FileSystem, root: str, shard: int, generation: int, columns: list[str] | None = None) -> pa.Table:
    """Every row of a committed generation's parts, data and quarantine, in the staging schema
    (only `columns` of it, if given)."""
    schema = pa.schema([STAGING_SCHEMA.field(c) for c in columns]) if columns else STAGING_SCHEMA
    tables = []
    for directory in (DATA_DIR, QUARANTINE_DIR):
        path = f"{root}/{directory}/{part_name(shard, generation)}"
        if fs.get_file_info(path).type == pa_fs.FileType.File:
            with fs.open_input_file(path) as f:
                present = set(pq.read_schema(f).names)
                table = pq.read_table(f, columns=[c for c in schema.names if c in present])
            for f in schema:
                if f.name not in table.column_names:
                    table = table.append_column(f, pa.nulls(table.num_rows, f.type))
            tables.append(table.select(schema.names).cast(schema))
    return pa.concat_tables(tables) if tables else schema.empty_table()


def read_plan(output_dir: str, shard: int) -> list[pa.Table]:
    """A shard's planned sources (runs in a Ray read task)."""
    fs, root = resolve(output_dir)
    with fs.open_input_file(plan_path(root, shard)) as f:
        return [pq.read_table(f).cast(WORKING_SCHEMA)]


def generation_of(marker: str | None) -> int:
    """The generation a marker name commits, 0 for none."""
    match = _MARKER.search("/" + (marker or ""))
    return int(match[2]) if match else 0


def stage_rows(fs: pa_fs.FileSystem, root: str, shard: int, generation: int, digest: str, rows: pa.Table) -> None:
    """Make finished rows of an open shard durable; the chunk's name is a digest of its rows' ids."""
    key = hashlib.sha256("\n".join(rows.column("sample_id").to_pylist()).encode()).hexdigest()[:20]
    folder = staging_dir(root, shard, generation, digest)
    fs.create_dir(folder, recursive=True)
    atomic_write(f"{folder}/chunk-{key}.parquet", parquet_bytes(to_staging(rows)), filesystem=fs)


def commit_shard(
    fs: pa_fs.FileSystem,
    root: str,
    *,
    shard: int,
    digest: str,
    generation: int,
    current: list[pa.Table],
    previous: str | None = None,
    keep_previous_rows: bool = False,
) -> dict:
    """Write the shard's parts and marker; returns the marker.

    `previous`: the marker name of the generation this one replaces, if any; with
    `keep_previous_rows` (a retry) its rows stay where `current` has no rows of the same source.
    """
    old = committed_rows(fs, root, shard, generation_of(previous)) if previous and keep_previous_rows else None
    current = [staged_rows(fs, root, shard, generation, digest), *current]
    rows = merge_rows(old, current)
    data, quarantine = split_parts(rows)
    files = {}
    for directory, table in ((DATA_DIR, data), (QUARANTINE_DIR, quarantine)):
        if table.num_rows:
            fs.create_dir(f"{root}/{directory}", recursive=True)
            atomic_write(f"{root}/{directory}/{part_name(shard, generation)}", parquet_bytes(table), filesystem=fs)
            files[directory] = part_name(shard, generation)
    statuses = pc.fill_null(rows.column("reason_code"), "ok").to_pylist()
    by_status = {s: statuses.count(s) for s in sorted(set(statuses))}
    retryable = int(pc.sum(pc.fill_null(rows.column("retryable"), False)).as_py() or 0)
    marker = {
        "shard": shard,
        "generation": generation,
        "digest": digest,
        "files": files,
        "rows": rows.num_rows,
        "sources": len(set(rows.column("source_id").to_pylist())),
        "by_status": by_status,
        "retryable": retryable,
    }
    fs.create_dir(f"{root}/{MARKER_DIR}", recursive=True)
    atomic_write(f"{root}/{MARKER_DIR}/{marker_name(shard, generation, digest)}", json.dumps(marker).encode(), filesystem=fs)
    # Committed: what follows is cleanup, which the next run's OutputState redoes if it is cut short.
    match = _MARKER.search("/" + (previous or ""))
    if match:
        old = [f"{root}/{MARKER_DIR}/{previous}"] + [f"{root}/{d}/{part_name(shard, int(match[2]))}" for d in (DATA_DIR, QUARANTINE_DIR)]
        for path in old:
            if fs.get_file_info(path).type == pa_fs.FileType.File:
                fs.delete_file(path)
    if fs.get_file_info(staging_dir(root, shard, generation, digest)).type == pa_fs.FileType.Directory:
        fs.delete_dir(staging_dir(root, shard, generation, digest))
    if fs.get_file_info(plan_path(root, shard)).type == pa_fs.FileType.File:
        fs.delete_file(plan_path(root, shard))
    return marker
