"""Stream a manifest or a directory of videos as batches of source rows with stable ids.

Nothing here holds one Python object per source: manifests are read in record batches, directories
are walked one folder at a time, and duplicate ids are found from an 8-byte digest per source
(sorted once the input is read: ~24 bytes per source at that moment).

Identity. A source's id is the manifest's `source_id`, else its path relative to the manifest's
folder (or the directory given as `input`), else, for an absolute path or URI, the URI itself. A
relative path and not a content digest, because a digest means reading every byte of a
10^7-file corpus before the first task can be planned, and because a path stays the same when the
corpus moves between disks and buckets. `content_sha256` is still recorded in every row, for
deduplication of copies. Two rows conflict only when they give the same id, i.e. the same file
(or the same explicit `source_id`): `a/clip001.mp4` and `b/clip001.mp4` are two sources.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.fs as pa_fs

from pipelines.manifests import iter_manifest_batches
from videomaker.storage import resolve

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
REQUIRED_COLUMNS = ("path", "caption")
TEXT_COLUMNS = ("path", "caption", "subject_class", "source_id")
SOURCE_SCHEMA = pa.schema(
    [
        pa.field("source_uri", pa.string()),
        pa.field("source_id", pa.string()),
        pa.field("sample_id", pa.string()),
        pa.field("caption", pa.string()),
        pa.field("subject_class", pa.string()),
    ]
)
# Rows per batch read from a manifest; bounds the reader's memory, not the dataflow's.
READ_BATCH_ROWS = 8192


def sample_id_for(source_key: str, clip: int = 0) -> str:
    """Stable across runs and machines: depends only on the source's identity and the clip number."""
    return hashlib.sha256(f"{source_key}#clip{clip}".encode()).hexdigest()[:20]


def _digest64(source_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(source_id.encode(), digest_size=8).digest(), "little")


def _walk(fs: pa_fs.FileSystem, root: str) -> Iterator[list[str]]:
    """Video paths under `root`, one sorted folder listing at a time (depth first, sorted names)."""
    pending = [root]
    while pending:
        folder = pending.pop()
        entries = sorted(fs.get_file_info(pa_fs.FileSelector(folder)), key=lambda e: e.path)
        videos = [e.path for e in entries if e.is_file and e.path.lower().endswith(VIDEO_SUFFIXES)]
        if videos:
            yield videos
        pending.extend(reversed([e.path for e in entries if e.type == pa_fs.FileType.Directory]))


def _text(column) -> list:
    return column.cast(pa.string()).to_pylist() if column is not None else None


def iter_sources(input_uri: str, *, default_subject_class: str, check_duplicates: bool = True) -> Iterator[pa.Table]:
    """Tables in `SOURCE_SCHEMA`: every source of a manifest (in its order) or a directory (sorted).

    Relative manifest paths are taken relative to the manifest. Raises `ValueError` naming both
    rows when two rows are the same source; that check completes when the iterator is exhausted.
    """
    fs, path = resolve(input_uri)
    info = fs.get_file_info(path)
    if info.type == pa_fs.FileType.NotFound:
        raise FileNotFoundError(f"`input` {input_uri!r} does not exist; give a manifest file or a directory of videos.")
    scheme = input_uri.split("://", 1)[0] + "://" if "://" in input_uri else ""
    digests = _DigestLog()

    def rows(uris: list[str], ids: list[str], captions=None, classes=None) -> pa.Table:
        if check_duplicates:
            digests.add(ids)
        default = default_subject_class.strip().lower()
        return pa.table(
            {
                "source_uri": uris,
                "source_id": ids,
                "sample_id": [sample_id_for(s) for s in ids],
                "caption": [c or "" for c in captions] if captions else [""] * len(ids),
                "subject_class": [(c or default).strip().lower() for c in classes] if classes else [default] * len(ids),
            },
            schema=SOURCE_SCHEMA,
        )

    if info.type == pa_fs.FileType.Directory:
        root = PurePosixPath(path)
        for videos in _walk(fs, path):
            yield rows([scheme + v for v in videos], [str(PurePosixPath(v).relative_to(root)) for v in videos])
    else:
        base = PurePosixPath(path).parent
        read = 0
        # Only the optional columns are typed up front: a missing required one must stay detectable.
        optional = tuple(c for c in TEXT_COLUMNS if c not in REQUIRED_COLUMNS)
        for batch in iter_manifest_batches(input_uri, text_columns=optional, where="`input`", batch_rows=READ_BATCH_ROWS):
            missing = [c for c in REQUIRED_COLUMNS if c not in batch.schema.names]
            if missing:
                raise ValueError(
                    f"Manifest {input_uri!r} lacks columns {missing}; it needs `path` and `caption` "
                    f"(optional `subject_class`, `source_id`). Found: {batch.schema.names}."
                )
            column = {name: batch.column(name) for name in batch.schema.names}
            explicit = _text(column.get("source_id")) or [None] * batch.num_rows
            uris, ids = [], []
            for number, (raw, given) in enumerate(zip(_text(column["path"]), explicit), start=read + 1):
                if raw is None:
                    raise ValueError(f"Manifest {input_uri!r}: row {number} has an empty `path`; give each row a video.")
                if "://" in raw:
                    uri, relative = raw, None
                elif PurePosixPath(raw).is_absolute():
                    if scheme and scheme != "file://":
                        raise ValueError(
                            f"Manifest {input_uri!r}: path {raw!r} is absolute but the manifest is on {scheme}, "
                            "which has no root; give a full URI or a path relative to the manifest."
                        )
                    uri, relative = scheme + raw, None
                else:
                    uri, relative = scheme + str(base / raw), str(PurePosixPath(raw))
                uris.append(uri)
                ids.append(given or relative or uri)
            read += batch.num_rows
            yield rows(uris, ids, _text(column["caption"]), _text(column.get("subject_class")))
    if check_duplicates:
        digests.check(input_uri, lambda: iter_sources(input_uri, default_subject_class=default_subject_class, check_duplicates=False))


class _DigestLog:
    """8 bytes per source while reading, ~24 during the final sort: ~240 MB at 10^7 sources."""

    def __init__(self):
        self.chunks: list[np.ndarray] = []

    def add(self, ids: list[str]) -> None:
        self.chunks.append(np.fromiter((_digest64(s) for s in ids), dtype=np.uint64, count=len(ids)))

    def check(self, input_uri: str, reread) -> None:
        if not self.chunks:
            return
        digests = np.concatenate(self.chunks)
        self.chunks = []
        order = np.argsort(digests, kind="stable")
        ordered = digests[order]
        same = np.flatnonzero(ordered[1:] == ordered[:-1])
        if not len(same):
            return
        for pair in same[:16]:  # beyond the first real duplicate only 64-bit collisions would be skipped
            first, second = sorted((int(order[pair]), int(order[pair + 1])))
            found, position = {}, 0
            for table in reread():
                for offset in (first, second):
                    if position <= offset < position + table.num_rows:
                        found[offset] = table.slice(offset - position, 1).to_pylist()[0]
                position += table.num_rows
                if len(found) == 2:
                    break
            a, b = found[first], found[second]
            if a["source_id"] == b["source_id"]:
                raise ValueError(
                    f"Rows {first} and {second} of {input_uri!r} are the same source {a['source_id']!r} "
                    f"({a['source_uri']} and {b['source_uri']}); list each video once, or give them distinct `source_id`s."
                )
