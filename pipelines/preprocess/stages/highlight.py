"""Highlight: the subject on white; objects are also cropped to their box and padded to a square."""

from __future__ import annotations

import cv2
import numpy as np

from pipelines.preprocess.images import decode_image, encode_png, frame_from_bytes
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

    def __init__(self, *, human_classes: tuple[str, ...], size: int):
        self.human_classes = set(human_classes)
        self.size = size

    def process(self, row: dict) -> None:
        image = frame_from_bytes(row["reference_frame"], row["width"], row["height"])
        mask = decode_image(row["mask_png"]) > 127
        reference = white_background(image, mask)
        if row["subject_class"] not in self.human_classes:
            reference = crop_to_square(reference, row["box"], self.size)
        row.update(reference_png=encode_png(reference), reference_frame=None)
