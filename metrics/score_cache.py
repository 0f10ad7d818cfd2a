"""Scores kept per (video content, unit, backend, protocol), so a re-run computes only what changed.

A unit of the pass (`metrics.suite.SCORE_UNITS`: CLIP's metrics, DINO-I, Face Sim, DD, each opt-in
metric) is keyed by the sha256 of what it reads (the decoded frames it scores, DD's frames, the
reference's pixels, FaceSim-Cur's reference, the prompt), the `describe()` of each backend it calls (name, library version,
weights digest and the options that change outputs), the suite settings it depends on (Face Sim's
protocol) and the unit's version. Adding a metric computes that unit alone; new weights for one
backend recompute only the units calling it; a re-run with nothing new calls no model.

The cache is a folder (local or object storage) of Parquet parts with `key`, `unit` and `values`
(the unit's record columns as JSON). Every scoring batch adds one part, so an interrupted run keeps
what it scored; `compact` merges the parts into one. An unreadable part is skipped with a warning:
the cache only ever saves work, it never decides a score.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from metrics.suite import SCORE_UNITS, MetricSuite, VideoToScore
from videomaker import storage

logger = logging.getLogger(__name__)

CACHE_SCHEMA = pa.schema([("key", pa.string()), ("unit", pa.string()), ("values", pa.string())])
KEY_VERSION = 1  # of the key's layout: bump to drop every cached score


def array_digest(array: np.ndarray) -> str:
    """sha256 of an array's dtype, shape and bytes."""
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def input_digests(video: VideoToScore) -> dict[str, str]:
    """The digest of each input a unit may read (`ScoreUnit.inputs`)."""
    frames = array_digest(video.frames)
    return {
        "frames": frames,
        "dd_frames": frames if video.dd_frames is None else array_digest(video.dd_frames),
        "reference": array_digest(video.reference),
        "face_cur_reference": array_digest(video.reference if video.face_cur_reference is None else video.face_cur_reference),
        "prompt": hashlib.sha256(video.prompt.encode()).hexdigest(),
    }


def unit_key(unit: str, inputs: dict[str, str], backends: dict, protocol: dict) -> str:
    """The cache key of one unit: its version, the digests of its inputs, its backends' descriptions, its protocol."""
    spec = SCORE_UNITS[unit]
    described = {
        "key_version": KEY_VERSION,
        "unit": unit,
        "version": spec.version,
        "inputs": {name: inputs[name] for name in spec.inputs},
        "backends": {role: backends.get(role) for role in spec.roles},
        "protocol": {name: protocol[name] for name in spec.protocol},
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def _plain(value):
    """numpy scalars (a detector's float32 box) as the Python numbers the record columns hold."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def part_files(location: str) -> list[str]:
    return [f for f in storage.list_files(location, recursive=False) if f.endswith(".parquet") and not storage.is_partial(f)]


def read_parts(parts: list[str]) -> dict[str, dict]:
    """key -> {"unit", "values"} of every readable part (later parts win; equal keys hold equal values)."""
    entries = {}
    for part in parts:
        try:
            table = pq.read_table(io.BytesIO(storage.read_bytes(part)), schema=CACHE_SCHEMA)
        except Exception as error:  # noqa: BLE001 - a bad part costs a recomputation, never a run
            logger.warning("Score cache part %s is unreadable and is skipped (its scores are recomputed): %s", part, error)
            continue
        for key, unit, values in zip(*(table.column(c).to_pylist() for c in CACHE_SCHEMA.names)):
            entries[key] = {"unit": unit, "values": values}
    return entries


def _write_part(location: str, rows: list[dict], prefix: str = "part") -> str:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=CACHE_SCHEMA), sink)
    path = storage.join(location, f"{prefix}-{uuid.uuid4().hex}.parquet")
    storage.write_bytes(path, sink.getvalue().to_pybytes())
    return path


def compact(location: str) -> int:
    """Merge every part under `location` into one; returns the number of entries.

    The merged part is written before the parts it read are deleted, and a part written meanwhile
    (another run sharing the cache) is left alone, so no entry is ever lost.
    """
    parts = part_files(location)
    if len(parts) <= 1:
        return len(read_parts(parts)) if parts else 0
    entries = read_parts(parts)
    _write_part(location, [{"key": k, **v} for k, v in entries.items()], prefix="merged")
    for part in parts:
        storage.delete(part)
    return len(entries)


class ScoreCache:
    """The cached units of a folder, and the ones scored since it was opened (written by `flush`).

    Example:
        >>> cache = ScoreCache.open("out/scores/cache")
        >>> records = score_requests(suite, requests, cache=cache)
        >>> cache.flush()
    """

    def __init__(self, location: str | None = None, entries: dict[str, dict] | None = None) -> None:
        self.location = location
        self.entries = dict(entries or {})
        self.pending: list[dict] = []
        self._described: tuple[int, dict] | None = None

    @classmethod
    def open(cls, location: str) -> ScoreCache:
        location = storage.absolute(location)
        return cls(location, read_parts(part_files(location)))

    def __len__(self) -> int:
        return len(self.entries)

    def keys(self, suite: MetricSuite, video: VideoToScore) -> dict[str, str]:
        """The key of every unit `suite` computes for `video`."""
        if self._described is None or self._described[0] != id(suite):
            self._described = (id(suite), suite.backends.describe())
        backends = self._described[1]
        inputs = input_digests(video)
        protocol = {"face_protocol": suite.face_protocol}
        return {unit: unit_key(unit, inputs, backends, protocol) for unit in suite.units(video)}

    def lookup(self, keys: dict[str, str]) -> dict[str, dict]:
        """unit -> its cached record columns (and `note`), for the keys held."""
        found = {}
        for unit, key in keys.items():
            entry = self.entries.get(key)
            if entry is not None and entry["unit"] == unit:
                found[unit] = json.loads(entry["values"])
        return found

    def add(self, key: str, unit: str, values: dict) -> None:
        entry = {"unit": unit, "values": json.dumps(values, sort_keys=True, default=_plain)}
        if self.entries.get(key) != entry:
            self.entries[key] = entry
            self.pending.append({"key": key, **entry})

    def flush(self) -> str | None:
        """Write the units added since the last flush as one part; returns its location (None: nothing new)."""
        if not self.pending or self.location is None:
            return None
        path = _write_part(self.location, self.pending)
        self.pending = []
        return path
