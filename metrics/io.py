"""Reading the videos and reference images to score (paths or URIs), with errors that say what is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from videomaker import storage

GifFrames = Literal["expand", "decoded"]
GIF_FRAMES = ("expand", "decoded")


class MediaError(Exception):
    """A video or image that cannot be scored; `code` is the record's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class DecodedVideo:
    """The frames of a video file and how they were obtained.

    Args:
        frames: uint8 RGB (F, H, W, 3).
        decoded: Frames the file itself holds; fewer than `len(frames)` when a GIF's merged
            frames were expanded back by their display time.
        gif: The file is a GIF (decoded with Pillow).
    """

    frames: np.ndarray
    decoded: int
    gif: bool = False


def _read(path: str, kind: str, what: str) -> bytes:
    """The file's bytes (a path or URI); `<kind>_missing` / `<kind>_unreadable` errors otherwise."""
    try:
        return storage.read_bytes(path)
    except FileNotFoundError:
        raise MediaError(f"{kind}_missing", f"{what} {path!r} does not exist.") from None
    except (OSError, ValueError) as error:
        raise MediaError(f"{kind}_unreadable", f"{what} {path!r} could not be read: {error}") from error


def _decode_av(data: bytes, path: str) -> np.ndarray:
    import io

    import av

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


def _decode_gif(data: bytes, path: str) -> tuple[np.ndarray, list[int]]:
    """Frames as Pillow decodes them (the way the published DD script read its GIFs) and their durations in ms."""
    import io

    from PIL import Image, UnidentifiedImageError

    frames, durations = [], []
    try:
        with Image.open(io.BytesIO(data)) as gif:
            for index in range(getattr(gif, "n_frames", 1)):
                gif.seek(index)
                frames.append(np.asarray(gif.convert("RGB"), dtype=np.uint8))
                durations.append(int(gif.info.get("duration") or 0))
    except (UnidentifiedImageError, OSError, ValueError, EOFError) as error:
        raise MediaError("video_unreadable", f"Video {path!r} could not be decoded as a GIF: {error}") from error
    if not frames:
        raise MediaError("video_unreadable", f"Video {path!r} has no decodable frame.")
    return np.stack(frames), durations


def expand_by_duration(frames: np.ndarray, durations: list[int], count: int | None = None) -> np.ndarray:
    """The frames a GIF shows at its nominal frame rate, undoing the writer's merge of identical frames.

    Pillow's GIF writer stores identical consecutive frames once with their durations summed, so
    16 frames can decode to fewer. Sampling the display timeline at the centres of `count` equal
    steps gives every stored frame back as many times as it was shown; GIF delays are whole
    centiseconds (125 ms reads back as 120 ms), so steps come from the total time, not one delay.

    Args:
        frames: The decoded frames (F, H, W, 3).
        durations: Display time of each frame in ms.
        count: Frames to return (the video's nominal count, e.g. 16); None: the total time over
            the shortest delay.
    """
    if len(frames) != len(durations):
        raise ValueError(f"`durations` has {len(durations)} entries for {len(frames)} frames.")
    if min(durations, default=0) <= 0:
        return frames  # no usable timing: nothing to expand
    total = float(sum(durations))
    if count is None:
        count = max(round(total / min(durations)), len(frames))
    if count <= len(frames):
        return frames
    ends = np.cumsum(durations)
    centres = (np.arange(count) + 0.5) * total / count
    return frames[np.minimum(np.searchsorted(ends, centres, side="right"), len(frames) - 1)]


def read_frames(path: str | Path, *, expected_frames: int | None = None, gif_frames: GifFrames = "expand") -> DecodedVideo:
    """Every frame of a video file as uint8 RGB (F, H, W, 3).

    GIFs are decoded with Pillow; everything else (mp4, the lossless .mkv) with PyAV.

    Args:
        expected_frames: The video's nominal frame count; a GIF that decodes to fewer (merged
            identical frames) is expanded to it by frame duration.
        gif_frames: `expand` (merged GIF frames given back by duration) or `decoded` (the frames as
            Pillow decodes them, what the published DD script iterated over).
    """
    if gif_frames not in GIF_FRAMES:
        raise ValueError(f"`gif_frames` must be one of {list(GIF_FRAMES)}, got {gif_frames!r}.")
    path = str(path)
    data = _read(path, "video", "Video")
    if data[:6] in (b"GIF87a", b"GIF89a"):
        frames, durations = _decode_gif(data, path)
        decoded = len(frames)
        if gif_frames == "expand":
            frames = expand_by_duration(frames, durations, expected_frames)
        return DecodedVideo(frames, decoded, gif=True)
    frames = _decode_av(data, path)
    return DecodedVideo(frames, len(frames))


def read_video(path: str | Path, *, expected_frames: int | None = None) -> np.ndarray:
    """Every frame of a video file (mp4, GIF, lossless .mkv) as uint8 RGB (F, H, W, 3); see `read_frames`."""
    return read_frames(path, expected_frames=expected_frames).frames


def decode_image(data: bytes, *, keep_gray: bool = False) -> np.ndarray:
    """An encoded image (PNG, JPEG, WebP, ...) as uint8 RGB (H, W, 3), upright by its EXIF orientation.

    Transparency is composited onto white. Generation conditions on the upright image, so every
    reader (scoring, preprocessing, training) decodes the same way.

    Args:
        data: The file's bytes.
        keep_gray: Return a single-channel image (a mask) as (H, W) instead of RGB.

    Raises:
        ValueError: the bytes are not an image PIL reads.
    """
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image = ImageOps.exif_transpose(image)
            if keep_gray and image.mode in ("L", "1"):
                return np.asarray(image.convert("L"), dtype=np.uint8).copy()
            if image.mode in ("RGBA", "LA", "P", "PA"):
                image = image.convert("RGBA")
                white = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(white, image)
            return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"not a readable image ({type(error).__name__}: {error})") from error


def read_image(path: str | Path, *, label: str = "Reference image") -> np.ndarray:
    """A reference image as uint8 RGB (H, W, 3), upright by its EXIF orientation (as generation reads it);
    transparency is composited onto white (see `decode_image`). `label` names it in errors."""
    path = str(path)
    data = _read(path, "reference", label)
    try:
        return decode_image(data)
    except ValueError as error:
        raise MediaError("reference_unreadable", f"{label} {path!r} could not be read: {error}") from error
