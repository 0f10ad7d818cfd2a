"""PNG/JPEG encoding of frames and masks; deterministic, so re-runs write identical bytes.

Decoding is `metrics.io.decode_image`, the one decoder every job reads images with.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode_png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def frame_to_bytes(image: np.ndarray) -> bytes:
    """Raw uint8 RGB pixels, for frames that only travel between stages (the reference candidates).

    Encoding them cost more CPU than the stages that read them (bench/RESULTS.md), and within a node
    Ray moves bytes through shared memory; the stages know the frame size from the row.
    """
    return np.ascontiguousarray(image, dtype=np.uint8).tobytes()


def frame_from_bytes(data: bytes, width: int, height: int) -> np.ndarray:
    """Inverse of `frame_to_bytes`: a read-only (height, width, 3) view of the bytes."""
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)
