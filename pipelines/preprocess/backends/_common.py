"""Argument checks and lazy imports shared by the SHP backends."""

from __future__ import annotations

import importlib
import math
from types import ModuleType

import numpy as np

from pipelines.preprocess.backends.base import Box


def check_box(box: Box, image: np.ndarray, argument: str = "box") -> Box:
    """Refuse a box that is not a non-empty `Box` inside `image` (x1/y1 exclusive)."""
    height, width = image.shape[:2]
    if not isinstance(box, Box):
        raise ValueError(f"`{argument}` must be a Box(x0, y0, x1, y1), got {type(box).__name__}.")
    inside = 0 <= box.x0 < box.x1 <= width and 0 <= box.y0 < box.y1 <= height
    if not (all(math.isfinite(v) for v in box.as_list()) and inside):
        raise ValueError(
            f"`{argument}` must be a non-empty box inside the {width}x{height} image "
            f"(0 <= x0 < x1 <= {width}, 0 <= y0 < y1 <= {height}), got {box}."
        )
    return box


def check_class_name(class_name: str) -> str:
    """The class word stripped of spaces; refuse an empty or non-string one."""
    if not isinstance(class_name, str) or not class_name.strip():
        raise ValueError(f"`class_name` must be a non-empty word such as 'dog', got {class_name!r}.")
    return class_name.strip()


def clip_box(x0: float, y0: float, x1: float, y1: float, score: float, width: int, height: int) -> Box | None:
    """The box cut to the image, or None when nothing of it is left."""
    x0, x1 = min(max(float(x0), 0.0), width), min(max(float(x1), 0.0), width)
    y0, y1 = min(max(float(y0), 0.0), height), min(max(float(y1), 0.0), height)
    return Box(x0, y0, x1, y1, float(score)) if x1 > x0 and y1 > y0 else None


def require(module: str, install: str, backend: str) -> ModuleType:
    """Import an optional heavy dependency, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(f"The {backend} backend needs `{module}`; install it with `pip install {install}`.") from error
