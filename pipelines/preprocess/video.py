"""Probe and decode videos with PyAV from any pyarrow filesystem, raising `Rejected` with a reason."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import av
import cv2
import numpy as np
import pyarrow.fs as pa_fs

from videomaker.storage import resolve


class Rejected(Exception):
    """A source that must go to quarantine; `reason` is a key of `schema.REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class Probe:
    content_sha256: str
    codec: str
    fps: float
    num_frames: int
    width: int
    height: int
    duration_s: float


_last_read: tuple[str, bytes] | None = None  # (uri|size|mtime, bytes)


def read_bytes(uri: str) -> bytes:
    """The whole file; videos are read once and hashed, probed, cut into shots and decoded from memory.

    The stages of one source run one after another in one process, so the last file read is kept
    for the next stage instead of being read again from storage.
    """
    global _last_read
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type == pa_fs.FileType.NotFound:
        raise Rejected("missing", f"{uri} does not exist; fix the manifest path or restore the file.")
    key = f"{uri}|{info.size}|{info.mtime_ns}"
    if _last_read is not None and _last_read[0] == key:
        return _last_read[1]
    _last_read = None
    try:
        with fs.open_input_stream(path) as f:
            data = f.read()
    except OSError as err:
        raise Rejected("missing", f"{uri} could not be read ({err}); check permissions or the storage.") from err
    _last_read = (key, data)
    return data


def _open(data: bytes, uri: str):
    if not data:
        raise Rejected("unreadable", f"{uri} is empty (0 bytes).")
    try:
        return av.open(io.BytesIO(data), mode="r")
    except av.error.FFmpegError as err:
        raise Rejected("unreadable", f"{uri} is not a readable media file: {err}.") from err


def probe(data: bytes, uri: str, *, supported_codecs: frozenset[str] | None = None) -> Probe:
    """Codec, frame rate, frame count, size and duration; frame count is decoded when not stored."""
    with _open(data, uri) as container:
        if not container.streams.video:
            raise Rejected("no_video_stream", f"{uri} has no video stream (streams: {[s.type for s in container.streams]}).")
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        if supported_codecs is not None and codec not in supported_codecs:
            raise Rejected("unsupported_codec", f"{uri} uses codec {codec!r}; supported: {sorted(supported_codecs)}.")
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 0.0
        width, height = stream.codec_context.width, stream.codec_context.height
        num_frames = stream.frames
        if not num_frames:
            try:
                num_frames = sum(1 for _ in container.decode(stream))
            except av.error.FFmpegError as err:
                raise Rejected("corrupt", f"{uri}: frames cannot be counted ({err}).") from err
        duration_s = float(stream.duration * stream.time_base) if stream.duration else (num_frames / fps if fps else 0.0)
    if not width or not height or not num_frames:
        raise Rejected("corrupt", f"{uri}: video stream reports size {width}x{height} and {num_frames} frames.")
    return Probe(hashlib.sha256(data).hexdigest(), codec, fps, int(num_frames), int(width), int(height), duration_s)


def resize(frame: np.ndarray, size: int, policy: str) -> np.ndarray:
    """Square `size` frame: `center_crop` scales the short side then crops, `stretch` ignores aspect."""
    if policy == "stretch":
        return cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    height, width = frame.shape[:2]
    scale = size / min(height, width)
    new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    scaled = cv2.resize(frame, (new_w, new_h), interpolation=interpolation)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return scaled[top : top + size, left : left + size]


def decode_frames(data: bytes, uri: str, indices: list[int], *, size: int, policy: str, threads: int = 0) -> dict[int, np.ndarray]:
    """Decode the wanted frame numbers in one sequential pass, resized; a broken stream is a decode_error.

    `threads`: codec threads, 0 for FFmpeg's choice (one per core).
    """
    wanted = set(indices)
    last = max(wanted)
    frames = {}
    try:
        with _open(data, uri) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = threads
            for number, frame in enumerate(container.decode(stream)):
                if number in wanted:
                    frames[number] = resize(frame.to_ndarray(format="rgb24"), size, policy)
                if number >= last:
                    break
    except av.error.FFmpegError as err:
        raise Rejected("decode_error", f"{uri}: decoding failed after {len(frames)} of {len(wanted)} frames ({err}).") from err
    if len(frames) != len(wanted):
        raise Rejected(
            "decode_error",
            f"{uri}: the stream ended after {len(frames)} of {len(wanted)} wanted frames (truncated or damaged file).",
        )
    return frames
