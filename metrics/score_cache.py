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

import functools
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


@functools.cache  # asked once per unit per video: the installed versions do not change meanwhile
def _library_versions(names: tuple[str, ...]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def unit_key(unit: str, inputs: dict[str, str], backends: dict, protocol: dict) -> str:
    """The cache key of one unit: its version and columns, the digests of its inputs, its backends'
    descriptions, the libraries of a weight-free unit, its protocol."""
    from metrics.records import UNIT_COLUMNS

    spec = SCORE_UNITS[unit]
    described = {
        "key_version": KEY_VERSION,
        "unit": unit,
        "version": spec.version,
        "columns": UNIT_COLUMNS[unit],  # a column added to a unit is computed, not left null from an old entry
        "libraries": dict(_library_versions(spec.libraries)),
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


def read_parts(parts: list[str]) -> tuple[dict[str, dict], list[str]]:
    """key -> {"unit", "values"} of every readable part (later parts win; equal keys hold equal values), and the parts read."""
    entries, read = {}, []
    for part in parts:
        try:
            table = pq.read_table(io.BytesIO(storage.read_bytes(part)), schema=CACHE_SCHEMA)
        except Exception as error:  # noqa: BLE001 - a bad part costs a recomputation, never a run
            logger.warning("Score cache part %s is unreadable and is skipped (its scores are recomputed): %s", part, error)
            continue
        for key, unit, values in zip(*(table.column(c).to_pylist() for c in CACHE_SCHEMA.names)):
            entries[key] = {"unit": unit, "values": values}
        read.append(part)
    return entries, read


def _write_part(location: str, rows: list[dict], prefix: str = "part") -> str:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=CACHE_SCHEMA), sink)
    path = storage.join(location, f"{prefix}-{uuid.uuid4().hex}.parquet")
    storage.write_bytes(path, sink.getvalue().to_pybytes())
    return path


def compact(location: str, *, max_merged: int = 8) -> int:
    """Merge the batch parts under `location` into one; returns the entries written (0: nothing to merge).

    A run's batch parts become one `merged-` part; earlier merged parts are left as they are until
    that would make more than `max_merged`, then all are merged, so a shared cache is not rewritten whole
    by every run. The merged part is written before the parts read are deleted; a part that could not
    be read, or one written meanwhile by another run, is left in place: no entry is lost.
    """
    if max_merged < 1:
        raise ValueError(f"`max_merged` must be >= 1, got {max_merged}.")
    try:
        return _compact(location, max_merged)
    except Exception as error:  # noqa: BLE001 - the cache only saves work: a storage failure never stops scoring
        logger.warning("Score cache %s was not compacted (%s: %s); its parts stay as they are.", location, type(error).__name__, error)
        return 0


def _compact(location: str, max_merged: int) -> int:
    parts = part_files(location)
    merged = [p for p in parts if storage.name(p).startswith("merged-")]
    batch = [p for p in parts if p not in merged]
    chosen = batch if len(merged) + 1 <= max_merged else parts
    if len(chosen) <= 1:  # one part is already what a merge would write
        return 0
    entries, read = read_parts(chosen)
    if not read:
        return 0
    _write_part(location, [{"key": k, **v} for k, v in entries.items()], prefix="merged")
    for part in read:
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
        self._described: tuple[object, dict] | None = None

    @classmethod
    def open(cls, location: str) -> ScoreCache:
        location = storage.absolute(location)
        try:
            parts = part_files(location)
        except Exception as error:  # noqa: BLE001 - an unreachable cache means computing everything, not failing
            logger.warning("Score cache %s cannot be listed (%s: %s); every score is computed.", location, type(error).__name__, error)
            parts = []
        return cls(location, read_parts(parts)[0])

    def __len__(self) -> int:
        return len(self.entries)

    def keys(self, suite: MetricSuite, video: VideoToScore) -> dict[str, str]:
        """The key of every unit `suite` computes for `video`."""
        if self._described is None or self._described[0] is not suite.backends:  # held, so never a reused id
            self._described = (suite.backends, suite.backends.describe())
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
        try:
            entry = {"unit": unit, "values": json.dumps(values, sort_keys=True, default=_plain)}
        except (TypeError, ValueError) as error:  # a value JSON cannot hold: that unit is computed again next time
            logger.warning("Unit %s is not cached: %s", unit, error)
            return
        if self.entries.get(key) != entry:
            self.entries[key] = entry
            self.pending.append({"key": key, **entry})

    def flush(self) -> str | None:
        """Write the units added since the last flush as one part; returns its location (None: nothing new)."""
        if not self.pending or self.location is None:
            return None
        pending, self.pending = self.pending, []
        try:
            return _write_part(self.location, pending)
        except Exception as error:  # noqa: BLE001 - the records are what matter; these units are computed again next time
            logger.warning("Score cache %s: %d units not written (%s: %s).", self.location, len(pending), type(error).__name__, error)
            return None
