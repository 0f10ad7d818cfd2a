"""Write generated frames as mp4 (H.264 via PyAV), GIF (Pillow) and a lossless FFV1 file (PyAV).

mp4 is for watching, the GIF is what the published dynamic degree was computed on, and the
lossless file keeps the exact generated frames that the embedding metrics read.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"`frames` must be uint8 (F, H, W, 3), got dtype {frames.dtype} shape {frames.shape}.")
    return frames


def write_mp4(frames: np.ndarray, path: str | Path, *, fps: int = 8, crf: int = 18) -> Path:
    """H.264 mp4 in yuv420p (plays everywhere); odd sizes are padded by one pixel as the codec needs.

    The index is written up front (faststart): browsers stream it, and a truncated copy still opens.
    """
    frames = _check_frames(frames)
    height, width = frames.shape[1:3]
    pad_h, pad_w = height % 2, width % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


LOSSLESS_SUFFIX = ".mkv"


def write_lossless(frames: np.ndarray, path: str | Path, *, fps: int = 8) -> Path:
    """Every frame bit-exact: FFV1 (intra-only, lossless) in Matroska, decoded back by the same PyAV reader.

    Chosen over a PNG-per-frame archive or npz because it is smaller (about 6.6 MB for 16 noisy
    512x512 frames, against 7.7 MB of PNGs and 11 MB of npz) and any size, odd ones included, is
    stored as is; the codec is the archival standard, so ffmpeg-based tools read it too.
    """
    frames = _check_frames(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="matroska") as container:
        stream = container.add_stream("ffv1", rate=Fraction(fps))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "bgr0"  # 8-bit RGB without chroma subsampling: exact for rgb24 input
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def write_gif(frames: np.ndarray, path: str | Path, *, fps: int = 8) -> Path:
    """Looping GIF; the published DD was computed on such palette-quantised frames.

    Pillow stores identical consecutive frames once with their durations summed;
    `metrics.io.read_frames` expands them back by duration.
    """
    frames = _check_frames(frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return path
