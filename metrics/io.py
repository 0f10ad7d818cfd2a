"""Reading the videos and reference images to score (paths or URIs), with errors that say what is wrong."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from videomaker import storage


class MediaError(Exception):
    """A video or image that cannot be scored; `code` is the record's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _read(path: str, kind: str, what: str) -> bytes:
    """The file's bytes (a path or URI); `<kind>_missing` / `<kind>_unreadable` errors otherwise."""
    try:
        return storage.read_bytes(path)
    except FileNotFoundError:
        raise MediaError(f"{kind}_missing", f"{what} {path!r} does not exist.") from None
    except (OSError, ValueError) as error:
        raise MediaError(f"{kind}_unreadable", f"{what} {path!r} could not be read: {error}") from error


def read_video(path: str | Path) -> np.ndarray:
    """Every frame of a video file (mp4, GIF, ...) as uint8 RGB (F, H, W, 3), decoded with PyAV."""
    import io

    import av

    path = str(path)
    data = _read(path, "video", "Video")
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise MediaError("video_unreadable", f"Video {path!r} has no video stream.")
            frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    except MediaError:
        raise
    except (av.FFmpegError, ValueError, OSError) as error:
        raise MediaError("video_unreadable", f"Video {path!r} could not be decoded: {error}") from error
    if not frames:
        raise MediaError("video_unreadable", f"Video {path!r} has no decodable frame.")
    return np.stack(frames)


def read_image(path: str | Path) -> np.ndarray:
    """A reference image as uint8 RGB (H, W, 3); transparency is composited onto white."""
    import io

    from PIL import Image, UnidentifiedImageError

    path = str(path)
    data = _read(path, "reference", "Reference image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "P"):
                image = image.convert("RGBA")
                white = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(white, image)
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise MediaError("reference_unreadable", f"Reference image {path!r} could not be read: {error}") from error
