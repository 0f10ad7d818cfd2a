"""Local paths and object-storage URIs through one small API, so every job reads and writes both alike.

A local path, `file://`, `s3://` (AWS or any S3-compatible server) or `gs://`: what pyarrow opens.
Credentials and endpoints come the way a cluster passes them to every node: the
standard environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
`AWS_ENDPOINT_URL` for a non-AWS server), which `ray job submit --runtime-env-json '{"env_vars": ...}'`
hands to every process of a job. Locations are joined as paths, so keep options out of the URI.

A write to object storage is one PUT, which readers see whole or not at all; a local write goes to
a temporary name and is renamed into place. Either way a killed writer leaves no half file.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pa_fs


def is_uri(location: str | Path) -> bool:
    return "://" in str(location)


def is_local(location: str | Path) -> bool:
    return not is_uri(location) or str(location).startswith("file://")


def absolute(location: str | Path) -> str:
    """A URI as it is; a local path expanded and made absolute (workers of a job share its working dir)."""
    # abspath, not resolve: a symlinked manifest keeps reading its neighbours beside the link.
    return str(location) if is_uri(location) else os.path.abspath(os.path.expanduser(str(location)))


def local_path(location: str | Path) -> Path:
    """The local path of a local location (a plain path or `file://`)."""
    text = str(location)
    return Path(text[len("file://") :] if text.startswith("file://") else text).expanduser()


def resolve(location: str | Path) -> tuple[pa_fs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it."""
    text = str(location)
    if not is_uri(text):
        return pa_fs.LocalFileSystem(), str(Path(text).expanduser().resolve())
    scheme, _, rest = text.partition("://")
    try:
        if scheme in ("s3", "gs"):
            bucket = rest.split("/", 1)[0]
            if not bucket:
                raise ValueError("the URI names no bucket")
            credentials = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith(("AWS_", "GOOGLE_"))))
            return _bucket_filesystem(f"{scheme}://{bucket}", credentials), rest.rstrip("/")
        return pa_fs.FileSystem.from_uri(text)
    except (OSError, ValueError) as error:
        raise ValueError(f"{text!r}: cannot open this location ({error}).") from error


@functools.lru_cache(maxsize=64)
def _bucket_filesystem(root: str, credentials: tuple) -> pa_fs.FileSystem:
    """One filesystem per bucket and set of credentials: S3 looks a new one's region up with a request."""
    return pa_fs.FileSystem.from_uri(root)[0]


def join(base: str | Path, *parts: str) -> str:
    """`base/part/...` for a path or a URI."""
    text = str(base)
    if not is_uri(text):
        return str(Path(text, *parts))
    return posixpath.join(text.rstrip("/"), *parts)


def relative_to(location: str | Path, base: str | Path) -> str:
    """A file named in a manifest at `base`: relative paths are read from the manifest's folder."""
    text = str(location)
    if is_uri(text):
        return text
    path = Path(text).expanduser()
    if path.is_absolute():
        return str(path)
    return absolute(join(parent(base), text))


def parent(location: str | Path) -> str:
    text = str(location)
    if not is_uri(text):
        return str(Path(text).parent)
    return posixpath.dirname(text.rstrip("/"))


def exists(location: str | Path) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type != pa_fs.FileType.NotFound


def is_dir(location: str | Path) -> bool:
    fs, path = resolve(location)
    return fs.get_file_info(path).type == pa_fs.FileType.Directory


def size(location: str | Path) -> int | None:
    """Bytes of a file, None when there is none."""
    fs, path = resolve(location)
    info = fs.get_file_info(path)
    return info.size if info.type == pa_fs.FileType.File else None


def read_bytes(location: str | Path) -> bytes:
    fs, path = resolve(location)
    try:
        with fs.open_input_stream(path) as stream:
            return stream.read()
    except FileNotFoundError:
        raise
    except OSError as error:
        if fs.get_file_info(path).type == pa_fs.FileType.NotFound:
            raise FileNotFoundError(f"{str(location)!r}: no such file.") from error
        raise


def open_input(location: str | Path) -> pa.NativeFile:
    """A seekable pyarrow input file (what pyarrow's CSV, JSON and Parquet readers take)."""
    fs, path = resolve(location)
    if fs.get_file_info(path).type != pa_fs.FileType.File:
        raise FileNotFoundError(f"{str(location)!r}: no such file.")
    return fs.open_input_file(path)


def suffix(location: str | Path) -> str:
    return posixpath.splitext(str(location))[1].lower()


def name(location: str | Path) -> str:
    return posixpath.basename(str(location).rstrip("/"))


def read_text(location: str | Path) -> str:
    return read_bytes(location).decode()


# Temporary files of a local write: hidden, beside the target, `.<name>.<8 hex>.partial`.
_PARTIAL = re.compile(r"(^|/)\.[^/]+\.[0-9a-f]{8}\.partial$")


def is_partial(path: str | Path) -> bool:
    """True for the temporary file of an interrupted local write (safe to delete)."""
    return bool(_PARTIAL.search(str(path)))


def _replace_into(target: Path, fill) -> None:
    """Fill a temporary file beside `target` (`fill(tmp)`), make it durable, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        fill(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(location: str | Path, data: bytes | str, *, filesystem: pa_fs.FileSystem | None = None) -> int:
    """Write `data` whole or not at all: readers never see part of it, a killed writer leaves no half file.

    Args:
        location: Local path or URI; with `filesystem`, a path of that filesystem.
        data: Bytes, or text written as UTF-8.
        filesystem: A pyarrow filesystem `location` is on (as `resolve` returns it), for callers that hold one.

    Returns:
        The size written. Locally: a temporary file, fsync, rename; on object storage: one PUT.
    """
    data = data.encode() if isinstance(data, str) else data
    if filesystem is None:
        if is_local(location):
            target = local_path(location)
            _replace_into(target, lambda tmp: tmp.write_bytes(data))
            return len(data)
        filesystem, location = resolve(location)
    if isinstance(filesystem, pa_fs.LocalFileSystem):
        _replace_into(Path(location), lambda tmp: tmp.write_bytes(data))
        return len(data)
    with filesystem.open_output_stream(str(location)) as stream:
        stream.write(data)
    return len(data)


def write_bytes(location: str | Path, data: bytes) -> int:
    """Write whole or not at all; returns the size (see `atomic_write`)."""
    return atomic_write(location, data)


def write_text(location: str | Path, text: str) -> int:
    return atomic_write(location, text)


def make_dirs(location: str | Path) -> None:
    fs, path = resolve(location)
    fs.create_dir(path, recursive=True)


def delete(location: str | Path) -> None:
    """Remove one file; a file already gone is not an error."""
    fs, path = resolve(location)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        pass


def list_files(location: str | Path, *, recursive: bool = True) -> list[str]:
    """Every file under a folder, as locations of the same kind as `location` (sorted)."""
    fs, path = resolve(location)
    if fs.get_file_info(path).type == pa_fs.FileType.NotFound:
        return []
    entries = fs.get_file_info(pa_fs.FileSelector(path, recursive=recursive))
    return sorted(join(location, posixpath.relpath(e.path, path)) for e in entries if e.type == pa_fs.FileType.File)


def list_dirs(location: str | Path) -> list[str]:
    """The folders directly under a folder (sorted)."""
    fs, path = resolve(location)
    if fs.get_file_info(path).type == pa_fs.FileType.NotFound:
        return []
    entries = fs.get_file_info(pa_fs.FileSelector(path, recursive=False))
    return sorted(join(location, posixpath.basename(e.path)) for e in entries if e.type == pa_fs.FileType.Directory)


@contextmanager
def local_file(location: str | Path, suffix: str = "") -> Iterator[Path]:
    """A local path holding the file: itself when local, else a temporary download removed afterwards."""
    if is_local(location):
        yield local_path(location)
        return
    with tempfile.TemporaryDirectory(prefix="videomaker-") as scratch:
        path = Path(scratch) / (posixpath.basename(str(location)) or f"file{suffix}")
        path.write_bytes(read_bytes(location))
        yield path


def download_dir(location: str | Path, destination: str | Path) -> Path:
    """Copy a folder (a checkpoint) to a local directory; a local folder is returned as it is."""
    if is_local(location):
        return local_path(location)
    fs, path = resolve(location)
    if fs.get_file_info(path).type != pa_fs.FileType.Directory:
        raise FileNotFoundError(f"{str(location)!r}: no such folder.")
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    for entry in fs.get_file_info(pa_fs.FileSelector(path, recursive=True)):
        if entry.type == pa_fs.FileType.File:
            target = destination / posixpath.relpath(entry.path, path)
            target.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(entry.path) as stream:
                target.write_bytes(stream.read())
    return destination


@contextmanager
def local_dir(location: str | Path) -> Iterator[Path]:
    """A local folder holding the folder's files: itself when local, else a temporary download."""
    if is_local(location):
        yield local_path(location)
        return
    with tempfile.TemporaryDirectory(prefix="videomaker-") as scratch:
        yield download_dir(location, Path(scratch) / "copy")


def upload_file(source: str | Path, location: str | Path) -> int:
    """Put a local file at `location` (whole or not at all)."""
    if is_local(location):
        target = local_path(location)
        if Path(source).resolve() == target.resolve():
            return target.stat().st_size
        _replace_into(target, lambda tmp: shutil.copyfile(source, tmp))
        return target.stat().st_size
    return write_bytes(location, Path(source).read_bytes())


def check_access(location: str | Path, *, argument: str, write: bool = False) -> None:
    """Fail before any work when a location cannot be reached: bad credentials, a missing bucket.

    Object stores are asked once (a listing, and for `write` a probe object written and deleted), so
    the error names the argument and the URI instead of surfacing later in a worker.
    """
    if is_local(location):
        return
    text = str(location)
    try:
        fs, path = resolve(text)
        bucket = path.split("/", 1)[0]
        if fs.get_file_info(bucket).type == pa_fs.FileType.NotFound:
            raise FileNotFoundError(f"bucket {bucket!r} does not exist")
        fs.get_file_info(path)
        if write:
            probe = f"{path.rstrip('/')}/.videomaker-write-probe-{uuid.uuid4().hex[:8]}"
            with fs.open_output_stream(probe) as stream:
                stream.write(b"")
            fs.delete_file(probe)
    except (OSError, ValueError) as error:
        action = "write to" if write else "read"
        raise ValueError(
            f"{argument} {text!r}: cannot {action} it: {error}. Check the bucket name and the credentials "
            "and endpoint in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL)."
        ) from error
