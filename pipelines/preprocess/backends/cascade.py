"""A weight-free face detector, so the human SHP path runs where no detector weights can be fetched."""

from __future__ import annotations

import cv2
import numpy as np
import skimage
from skimage import data

from pipelines.preprocess.backends._common import clip_box
from pipelines.preprocess.backends.base import Box, check_image

# Frames are scanned at the scale where the smallest face searched is this large. The cascade's
# window is 24 px and a face needs some margin above it to gather `min_neighbors` hits (at 24-26 px
# it found none on 64-px frames); and the scan then costs the same (~20 ms) at any frame size.
_SMALLEST_FACE_SCAN_PX = 32
# A detection covering more than this share of a larger kept one is the same face.
_SAME_FACE_OVERLAP = 0.5


def merge_overlapping(boxes: list[Box]) -> list[Box]:
    """Largest first, dropping every box mostly covered by a larger kept one (one face, one box)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b.width * b.height, reverse=True):
        area = box.width * box.height
        covered = (max(0.0, min(box.x1, k.x1) - max(box.x0, k.x0)) * max(0.0, min(box.y1, k.y1) - max(box.y0, k.y0)) for k in kept)
        if all(c <= _SAME_FACE_OVERLAP * area for c in covered):
            kept.append(box)
    return kept


def load_bundled_cascade() -> cv2.CascadeClassifier:
    """scikit-image's bundled LBP frontal-face cascade, in OpenCV's (14x faster) evaluator.

    The bundled file misspells one tag (`featuhreParams`) that OpenCV's reader requires, so it is
    read from memory with that tag corrected; the trained stages are untouched.
    """
    with open(data.lbp_frontal_face_cascade_filename()) as f:
        xml = f.read().replace("featuhreParams", "featureParams")
    storage = cv2.FileStorage(xml, cv2.FILE_STORAGE_READ | cv2.FILE_STORAGE_MEMORY)
    cascade = cv2.CascadeClassifier()
    if not cascade.read(storage.getFirstTopLevelNode()):
        raise RuntimeError(f"OpenCV {cv2.__version__} could not read scikit-image's LBP face cascade.")
    return cascade


class CascadeFaceDetector:
    """Frontal faces with scikit-image's bundled LBP cascade (no weights to download).

    An approximation of a CNN face detector: it finds upright frontal faces only, and busy
    textures can fire it. Boxes carry score 1.0 (the cascade has no confidence).

    Args:
        min_face_fraction (float, default 0.1): Smallest face searched, as a share of the frame's
            short side. Searching smaller faces adds false hits (scikit-image's astronaut gets a
            second "face" on her helmet at 0.08); faces below it are reported as not found.
        scale_factor (float, default 1.1): Ratio between successive search window sizes.
        min_neighbors (int, default 6): Overlapping raw hits needed to accept a face; fewer finds
            more faces and more false ones (e.g. a shiny helmet at some scales).

    Example:
        >>> faces = CascadeFaceDetector().detect(skimage.data.astronaut())  # one box on her face
    """

    name = "cascade"
    weight_free = True

    def __init__(self, *, min_face_fraction: float = 0.1, scale_factor: float = 1.1, min_neighbors: int = 6) -> None:
        if not 0 < min_face_fraction <= 1:
            raise ValueError(f"`min_face_fraction` must be in (0, 1], got {min_face_fraction}.")
        if not scale_factor > 1:
            raise ValueError(f"`scale_factor` must be > 1 (window growth per scale), got {scale_factor}.")
        if not (isinstance(min_neighbors, int) and min_neighbors >= 1):
            raise ValueError(f"`min_neighbors` must be an integer >= 1, got {min_neighbors!r}.")
        self.min_face_fraction = min_face_fraction
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.version = f"scikit-image=={skimage.__version__};opencv=={cv2.__version__}"
        self._cascade = load_bundled_cascade()

    def detect(self, image: np.ndarray) -> list[Box]:
        """All faces in `image` (uint8 RGB (H, W, 3)), largest first."""
        check_image(image)
        height, width = image.shape[:2]
        scale = _SMALLEST_FACE_SCAN_PX / (self.min_face_fraction * min(height, width))
        gray = cv2.resize(
            cv2.cvtColor(image, cv2.COLOR_RGB2GRAY),
            (round(width * scale), round(height * scale)),
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        )
        side = min(gray.shape)
        smallest = min(side, _SMALLEST_FACE_SCAN_PX)
        hits = self._cascade.detectMultiScale(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(smallest, smallest),
            maxSize=(side, side),
        )
        corners = [(x, y, x + w, y + h) for x, y, w, h in hits]
        boxes = [clip_box(*(float(v) / scale for v in corner), 1.0, width, height) for corner in corners]
        return merge_overlapping([b for b in boxes if b is not None])
