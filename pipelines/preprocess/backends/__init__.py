"""SHP model backends by registry name: face detectors, object detectors, segmenters.

The weight-free backends ("cascade", "center-grabcut", "grabcut") run anywhere; the model ones
("insightface", "grounding-dino", "sam") need staged weights and import their libraries only when
built.

Example:
    >>> segmenter = make_segmenter("sam", checkpoint_path="models/sam_vit_b_01ec64.pth", device="cuda")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metrics.backends.registry import BackendRegistry, BackendSpec
from pipelines.preprocess.backends.base import FaceDetector, ObjectDetector, Segmenter
from pipelines.preprocess.backends.cascade import CascadeFaceDetector
from pipelines.preprocess.backends.grabcut import CenterGrabCutObjectDetector, GrabCutSegmenter
from pipelines.preprocess.backends.grounding_dino import GroundingDinoDetector
from pipelines.preprocess.backends.sam import SAMSegmenter
from pipelines.preprocess.backends.scrfd import InsightFaceDetector

if TYPE_CHECKING:
    from pipelines.preprocess.config import PreprocessConfig

SHP_BACKENDS = BackendRegistry(
    {
        "face detector": {"cascade": CascadeFaceDetector, "insightface": InsightFaceDetector},
        "object detector": {"grounding-dino": GroundingDinoDetector, "center-grabcut": CenterGrabCutObjectDetector},
        "segmenter": {"grabcut": GrabCutSegmenter, "sam": SAMSegmenter},
    }
)
# Which field of the config's `models` group names which kind.
CONFIG_KINDS = {"face_detector": "face detector", "object_detector": "object detector", "segmenter": "segmenter"}


def backend_class(kind: str, name: str) -> type:
    """The class registered as `name` for `kind` ("face detector", "object detector", "segmenter")."""
    return SHP_BACKENDS.get(kind, name)


def check_backends(config: PreprocessConfig) -> None:
    """Refuse an unknown backend name or option of `config` (a `PreprocessConfig`) before anything launches.

    Every model backend is checked against its constructor's signature, with a message naming the
    config key, the unknown option and the valid ones.
    """
    for key, kind in CONFIG_KINDS.items():
        SHP_BACKENDS.check(kind, getattr(config.models, key), where=f"PreprocessConfig(models.{key}.options)")


def make_face_detector(name: str, **options: Any) -> FaceDetector:
    """A face detector by name ("cascade", "insightface") with its constructor options."""
    return SHP_BACKENDS.build("face detector", BackendSpec(name, options))


def make_object_detector(name: str, **options: Any) -> ObjectDetector:
    """An object detector by name ("grounding-dino", "center-grabcut") with its constructor options."""
    return SHP_BACKENDS.build("object detector", BackendSpec(name, options))


def make_segmenter(name: str, **options: Any) -> Segmenter:
    """A segmenter by name ("grabcut", "sam") with its constructor options."""
    return SHP_BACKENDS.build("segmenter", BackendSpec(name, options))
