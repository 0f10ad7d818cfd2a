"""A weight-free face detector, so the human SHP path runs where no detector weights can be fetched."""

from __future__ import annotations

import numpy as np
import skimage
from skimage import color, data, feature, transform

from pipelines.preprocess.backends._common import clip_box
from pipelines.preprocess.backends.base import Box, check_image

# The cascade's training window; no face smaller than this can be found.
_WINDOW_PX = 24
# Frames are scanned at most this large: cost and false hits grow with the pixel count, and
# faces worth keeping (>= min_face_fraction of the short side) stay above the 24 px window.
_WORK_SIDE_PX = 512
# A detection covering more than this share of a larger kept one is the same face.
_SAME_FACE_OVERLAP = 0.5


def merge_overlapping(boxes: list[Box]) -> list[Box]:
    """Largest first, dropping every box mostly covered by a larger kept one (one face, one box)."""
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: b.width * b.height, reverse=True):
        area = box.width * box.height
        covered = (
            max(0.0, min(box.x1, k.x1) - max(box.x0, k.x0)) * max(0.0, min(box.y1, k.y1) - max(box.y0, k.y0))
            for k in kept
        )
        if all(c <= _SAME_FACE_OVERLAP * area for c in covered):
            kept.append(box)
    return kept


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

    def __init__(self, *, min_face_fraction: float = 0.1, scale_factor: float = 1.1, min_neighbors: int = 6):
        if not 0 < min_face_fraction <= 1:
            raise ValueError(f"`min_face_fraction` must be in (0, 1], got {min_face_fraction}.")
        if not scale_factor > 1:
            raise ValueError(f"`scale_factor` must be > 1 (window growth per scale), got {scale_factor}.")
        if not (isinstance(min_neighbors, int) and min_neighbors >= 1):
            raise ValueError(f"`min_neighbors` must be an integer >= 1, got {min_neighbors!r}.")
        self.min_face_fraction = min_face_fraction
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.version = f"scikit-image=={skimage.__version__}"
        self._cascade = feature.Cascade(data.lbp_frontal_face_cascade_filename())

    def detect(self, image: np.ndarray) -> list[Box]:
        """All faces in `image` (uint8 RGB (H, W, 3)), largest first."""
        check_image(image)
        height, width = image.shape[:2]
        scale = min(1.0, _WORK_SIDE_PX / max(height, width))
        gray = color.rgb2gray(image)
        if scale < 1.0:
            gray = transform.rescale(gray, scale, anti_aliasing=True)
        side = min(gray.shape)
        smallest = max(_WINDOW_PX, int(self.min_face_fraction * side))
        if smallest > side:
            return []
        hits = self._cascade.detect_multi_scale(
            gray,
            scale_factor=self.scale_factor,
            step_ratio=1,
            min_size=(smallest, smallest),
            max_size=(side, side),
            min_neighbor_number=self.min_neighbors,
        )
        corners = [(h["c"], h["r"], h["c"] + h["width"], h["r"] + h["height"]) for h in hits]
        boxes = [clip_box(*(v / scale for v in corner), 1.0, width, height) for corner in corners]
        return merge_overlapping([b for b in boxes if b is not None])
