"""SHP model backends by registry name: face detectors, object detectors, segmenters.

The weight-free backends ("cascade", "center-grabcut", "grabcut") run anywhere; the model ones
("insightface", "grounding-dino", "sam") need staged weights and import their libraries only when
built.

Example:
    >>> segmenter = make_segmenter("sam", checkpoint_path="models/sam_vit_b_01ec64.pth", device="cuda")
"""

from __future__ import annotations

from pipelines.preprocess.backends.base import FaceDetector, ObjectDetector, Segmenter
from pipelines.preprocess.backends.cascade import CascadeFaceDetector
from pipelines.preprocess.backends.grabcut import CenterGrabCutObjectDetector, GrabCutSegmenter
from pipelines.preprocess.backends.grounding_dino import GroundingDinoDetector
from pipelines.preprocess.backends.sam import SAMSegmenter
from pipelines.preprocess.backends.scrfd import InsightFaceDetector

FACE_DETECTORS = {"cascade": CascadeFaceDetector, "insightface": InsightFaceDetector}
OBJECT_DETECTORS = {"grounding-dino": GroundingDinoDetector, "center-grabcut": CenterGrabCutObjectDetector}
SEGMENTERS = {"grabcut": GrabCutSegmenter, "sam": SAMSegmenter}


REGISTRIES = {"face detector": FACE_DETECTORS, "object detector": OBJECT_DETECTORS, "segmenter": SEGMENTERS}


def backend_class(kind: str, name: str) -> type:
    """The class registered as `name` for `kind` ("face detector", "object detector", "segmenter")."""
    registry = REGISTRIES[kind]
    if name not in registry:
        raise ValueError(f"Unknown {kind} {name!r}. Available: {sorted(registry)}.")
    return registry[name]


def make_face_detector(name: str, **options) -> FaceDetector:
    """A face detector by name ("cascade", "insightface") with its constructor options."""
    return backend_class("face detector", name)(**options)


def make_object_detector(name: str, **options) -> ObjectDetector:
    """An object detector by name ("grounding-dino", "center-grabcut") with its constructor options."""
    return backend_class("object detector", name)(**options)


def make_segmenter(name: str, **options) -> Segmenter:
    """A segmenter by name ("grabcut", "sam") with its constructor options."""
    return backend_class("segmenter", name)(**options)
