"""Manifests: tables of files and their facts, as CSV, JSONL or Parquet, local or on object storage.

One reader for every job (the preprocessing input, the scoring manifest, the benchmark, imported
videos), with one rule for text: every CSV column is read as text (ids like "007" stay ids), and
every text value is stripped of surrounding whitespace, an empty one becoming None. JSON and
Parquet keep their own types for numbers.

Example:
    >>> rows = read_manifest("scores.csv", required=("video", "prompt"), where="`manifest`")
    >>> rows[0]["video"]
    'videos/a.mp4'
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.compute as pc

from videomaker import storage

MANIFEST_SUFFIXES = (".csv", ".jsonl", ".json", ".parquet")
# Rows per batch when a manifest is streamed; bounds the reader's memory, not the dataflow's.
READ_BATCH_ROWS = 8192


def manifest_suffix(path: str, *, where: str = "manifest") -> str:
    """The manifest's format by suffix; refuses any other with the formats it reads."""
    suffix = PurePosixPath(str(path)).suffix.lower()
    if suffix not in MANIFEST_SUFFIXES:
        raise ValueError(f"{where} {str(path)!r} must be .csv, .jsonl or .parquet, got {suffix or 'no extension'!r}.")
    return suffix


def _clean(batch: pa.RecordBatch | pa.Table):
    """The one text rule: strip every string value, an empty one becomes null."""
    columns = []
    for column in batch.columns:
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            stripped = pc.utf8_trim_whitespace(column)
            column = pc.if_else(pc.equal(stripped, ""), pa.scalar(None, column.type), stripped)
        columns.append(column)
    return type(batch).from_arrays(columns, names=batch.schema.names)


def _csv_header(fs, path: str) -> list[str]:
    import pyarrow.csv as pa_csv

    with fs.open_input_stream(path) as f:
        try:
            return pa_csv.open_csv(f, read_options=pa_csv.ReadOptions(block_size=1 << 16)).schema.names
        except pa.ArrowInvalid as err:  # an empty file has no header
            raise ValueError(f"manifest {path!r} cannot be read as CSV: {err}") from err


def iter_manifest_batches(
    location: str | Path, *, text_columns: tuple[str, ...] = (), where: str = "manifest", batch_rows: int = READ_BATCH_ROWS
) -> Iterator[pa.RecordBatch]:
    """The manifest's rows as record batches, in file order, without holding the whole file.

    Args:
        location: Path or URI of the manifest.
        text_columns: Optional columns read as text in JSONL even when the first rows lack them, so
            one that appears later does not fail the read (CSV columns are always text). A column
            listed here always exists, so list no required one.
        where: How messages name the manifest (e.g. "`input`").
        batch_rows: Rows per batch of a Parquet file (CSV and JSONL come in ~1 MB blocks).
    """
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    fs, path = storage.resolve(location)
    suffix = manifest_suffix(path, where=where)
    if suffix == ".csv":
        text = dict.fromkeys(_csv_header(fs, path), pa.string())
    with fs.open_input_file(path) as f:
        if suffix == ".parquet":
            for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows):
                yield _clean(batch)
            return
        if suffix == ".csv":
            reader = pa_csv.open_csv(
                f,
                read_options=pa_csv.ReadOptions(block_size=1 << 20),
                convert_options=pa_csv.ConvertOptions(column_types=text, strings_can_be_null=True),
            )
        else:
            schema = pa.schema([(name, pa.string()) for name in text_columns])
            reader = pa_json.open_json(
                f,
                read_options=pa_json.ReadOptions(block_size=1 << 20),
                parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
            )
        for batch in reader:
            yield _clean(batch)


def missing_columns(names: list[str], required: tuple[str, ...] | list[str]) -> list[str]:
    """The required columns `names` lacks, in the order they are required."""
    return [c for c in required if c not in names]


def read_manifest(location: str | Path, *, required: tuple[str, ...] | list[str] = (), where: str = "manifest") -> list[dict]:
    """Every row of a CSV, JSONL or Parquet manifest as a dict, text stripped and empty text None.

    Args:
        location: Path or URI of the manifest.
        required: Columns every row must have a value in; a file without one of them, or rows with
            an empty one, are refused with every such row listed.
        where: How messages name the manifest (its config key, e.g. "`benchmark`").

    Returns:
        The rows in file order.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: another format, a missing column, or rows with empty required values.
    """
    path = storage.absolute(location) if storage.is_uri(location) else str(Path(location).expanduser())
    if storage.size(path) is None:
        raise FileNotFoundError(f"{where} {path!r} does not exist; give a .csv, .jsonl or .parquet manifest.")
    batches = list(iter_manifest_batches(path, where=where))
    names = batches[0].schema.names if batches else []
    if not batches and manifest_suffix(path) == ".csv":
        fs, resolved = storage.resolve(path)
        names = _csv_header(fs, resolved)
    rows = [row for batch in batches for row in batch.to_pylist()]
    missing = missing_columns(names, required)
    if missing:
        raise ValueError(f"{where} {path!r} lacks the column(s) {missing}; it has {names}.")
    problems = []
    for number, row in enumerate(rows, start=1):
        empty = [c for c in required if row.get(c) is None]
        if empty:
            problems.append(f"row {number}: empty {empty}")
    if problems:
        raise ValueError(f"{where} {path!r} has {len(problems)} bad row(s): " + "; ".join(problems))
    return rows
