"""Turn a manifest or a directory of videos into source rows with stable sample ids."""

from __future__ import annotations

import hashlib
from pathlib import PurePosixPath

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.fs as pa_fs
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from videomaker.storage import resolve

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
REQUIRED_COLUMNS = ("path", "caption")


def sample_id_for(source_key: str, clip: int = 0) -> str:
    """Stable across runs and machines: depends only on the source's identity and the clip number."""
    return hashlib.sha256(f"{source_key}#clip{clip}".encode()).hexdigest()[:20]


def _read_manifest(fs: pa_fs.FileSystem, path: str) -> pa.Table:
    suffix = PurePosixPath(path).suffix.lower()
    with fs.open_input_file(path) as f:
        if suffix == ".csv":
            return pa_csv.read_csv(f, convert_options=pa_csv.ConvertOptions(strings_can_be_null=True))
        if suffix in (".jsonl", ".json"):
            return pa_json.read_json(f)
        if suffix == ".parquet":
            return pq.read_table(f)
    raise ValueError(f"Manifest {path!r}: unsupported format {suffix!r}; use .csv, .jsonl or .parquet.")


def read_sources(input_uri: str, *, default_subject_class: str) -> list[dict]:
    """One dict per source video: path/URI, caption, subject class, source id and sample id.

    A directory is scanned for videos (caption: empty, class: the default); a manifest keeps its
    order. Relative manifest paths are taken relative to the manifest.
    """
    fs, path = resolve(input_uri)
    info = fs.get_file_info(path)
    if info.type == pa_fs.FileType.NotFound:
        raise FileNotFoundError(f"`input` {input_uri!r} does not exist; give a manifest file or a directory of videos.")
    if info.type == pa_fs.FileType.Directory:
        entries = fs.get_file_info(pa_fs.FileSelector(path, recursive=True))
        videos = sorted(e.path for e in entries if e.is_file and e.path.lower().endswith(VIDEO_SUFFIXES))
        rows = [{"path": v, "caption": "", "subject_class": None, "source_id": None} for v in videos]
        base = None
    else:
        table = _read_manifest(fs, path)
        missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(
                f"Manifest {input_uri!r} lacks columns {missing}; it needs `path` and `caption` "
                f"(optional `subject_class`, `source_id`). Found: {table.column_names}."
            )
        rows = table.to_pylist()
        base = PurePosixPath(path).parent

    scheme = input_uri.split("://", 1)[0] + "://" if "://" in input_uri else ""
    sources, seen = [], {}
    for index, row in enumerate(rows):
        raw = str(row["path"])
        if "://" in raw or PurePosixPath(raw).is_absolute():
            uri = raw
        else:
            uri = str(base / raw) if base is not None else raw
        if scheme and "://" not in uri:
            uri = scheme + uri
        source_id = row.get("source_id") or PurePosixPath(uri.split("://")[-1]).stem
        if source_id in seen:
            raise ValueError(
                f"Manifest rows {seen[source_id]} and {index} share source_id {source_id!r}; source ids must be unique."
            )
        seen[source_id] = index
        sources.append({
            "source_uri": uri,
            "source_id": source_id,
            "sample_id": sample_id_for(source_id),
            "caption": row.get("caption") or "",
            "subject_class": (row.get("subject_class") or default_subject_class).strip().lower(),
        })
    return sources
