"""PNG/JPEG encoding of frames and masks; deterministic, so re-runs write identical bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# Frames that only travel between stages (the reference candidates) are written fast: at 256 px,
# level 1 encodes 3.5x faster than level 6 for 13% more bytes (bench/RESULTS.md). Stored images
# keep level 6.
TRANSIENT_PNG_LEVEL = 1


def encode_png(image: np.ndarray, *, compress_level: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", optimize=False, compress_level=compress_level)
    return buffer.getvalue()


def encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """uint8 RGB (H, W, 3), or (H, W) for single-channel images such as masks."""
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB") if image.mode not in ("L", "1") else image.convert("L")).copy()
