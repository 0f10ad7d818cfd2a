"""What every SHP model backend looks like: detectors return boxes, segmenters return masks.

Images are uint8 RGB arrays `(H, W, 3)`; boxes are pixel coordinates (x0, y0, x1, y1) with x1/y1
exclusive. Every backend states a `name` and a `version` (weights digest or library version) that
the dataset records beside each sample, and whether it is `weight_free`: an algorithm with nothing
to load runs inside the decode tasks, a model that loads weights once runs on its stage's actor pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Box:
    x0: float
    y0: float
    x1: float
    y1: float
    score: float = 1.0

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    def as_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]


def check_image(image: np.ndarray, argument: str = "image") -> np.ndarray:
    """Refuse anything but a uint8 RGB `(H, W, 3)` array, naming what was received."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}".strip()
        raise ValueError(f"`{argument}` must be a uint8 RGB array (H, W, 3), got {got}.")
    return image


class FaceDetector(Protocol):
    name: str
    version: str
    weight_free: bool

    def detect(self, image: np.ndarray) -> list[Box]:
        """All faces in `image`, largest first."""


class ObjectDetector(Protocol):
    name: str
    version: str
    weight_free: bool

    def detect(self, image: np.ndarray, class_name: str) -> list[Box]:
        """Boxes of `class_name` (e.g. "dog") in `image`, best first."""


class Segmenter(Protocol):
    name: str
    version: str
    weight_free: bool

    def segment(self, image: np.ndarray, box: Box) -> np.ndarray:
        """Bool mask `(H, W)` of the subject inside/around `box`."""
