"""Highlight: the subject on white; objects are also cropped to their box and padded to a square.

With mode `raw_frame` (the paper's ablation rows without SHP) the reference is the frame itself."""

from __future__ import annotations

import cv2
import numpy as np

from metrics.io import decode_image
from pipelines.preprocess.images import encode_png, frame_from_bytes
from pipelines.preprocess.stages.base import RowStage


def white_background(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = image.copy()
    out[~mask] = 255
    return out


def crop_to_square(image: np.ndarray, box: list[float], size: int) -> np.ndarray:
    """Crop to the box, pad the short side with white to a square, resize to `size`."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    crop = image[max(0, y0) : max(y0 + 1, y1), max(0, x0) : max(x0 + 1, x1)]
    height, width = crop.shape[:2]
    side = max(height, width)
    canvas = np.full((side, side, 3), 255, dtype=np.uint8)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top : top + height, left : left + width] = crop
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_CUBIC)


class HighlightStage(RowStage):
    name = "highlight"

    def __init__(self, *, human_classes: tuple[str, ...], size: int, mode: str = "shp") -> None:
        if mode not in ("shp", "raw_frame"):
            raise ValueError(f"HighlightStage(mode={mode!r}): use 'shp' or 'raw_frame'.")
        self.human_classes = set(human_classes)
        self.size = size
        self.mode = mode

    def reference(self, row: dict, pixels: bytes, mask_png: bytes, box: list[float]) -> bytes:
        image = frame_from_bytes(pixels, row["width"], row["height"])
        if self.mode == "raw_frame":
            return encode_png(image)
        reference = white_background(image, decode_image(mask_png, keep_gray=True) > 127)
        if row["subject_class"] not in self.human_classes:
            reference = crop_to_square(reference, box, self.size)
        return encode_png(reference)

    def process(self, row: dict) -> None:
        references = [self.reference(row, *kept) for kept in zip(row["reference_frames"], row["mask_pngs"], row["reference_boxes"])]
        row.update(reference_png=references[0], reference_pngs=references, reference_mode=self.mode, reference_frames=None)
