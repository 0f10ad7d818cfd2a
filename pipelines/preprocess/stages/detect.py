"""Detection: the subject's box on a reference candidate (humans: the head; objects: the class word).

Candidates are tried in their seeded order; the first `references` with exactly one large-enough
subject become the clip's reference frames (the first is the primary one, `reference_frame_index`).
If none qualifies, the clip is rejected with the most telling reason.
"""

from __future__ import annotations

import json
import math
from functools import partial

from metrics.backends.registry import BackendSpec
from pipelines.preprocess.backends import make_face_detector, make_object_detector
from pipelines.preprocess.backends._common import clip_box
from pipelines.preprocess.backends.base import Box
from pipelines.preprocess.images import frame_from_bytes
from pipelines.preprocess.stages.base import RowStage
from pipelines.preprocess.video import Rejected

# When candidates fail differently, report the reason that best describes the clip.
_REASON_PRIORITY = ("several_subjects", "subject_too_small", "no_subject")


def head_box(face: Box, scale: float, width: int, height: int) -> Box:
    """Enlarge a face box to cover the head: `scale` times the face size, centre raised by 10%."""
    side = scale * max(face.width, face.height)
    cx = (face.x0 + face.x1) / 2
    cy = (face.y0 + face.y1) / 2 - 0.1 * face.height
    return Box(
        max(0.0, cx - side / 2),
        max(0.0, cy - side / 2),
        min(float(width), cx + side / 2),
        min(float(height), cy + side / 2),
        face.score,
    )


def usable_box(box: Box, width: int, height: int) -> Box | None:
    """The box cut to the frame, or None when it is not finite, empty or wholly off the frame."""
    values = box.as_list()
    if not all(math.isfinite(v) for v in values):
        return None
    return clip_box(*values, box.score, width, height)


class DetectStage(RowStage):
    name = "detect"

    def __init__(
        self,
        *,
        face_detector: BackendSpec,
        object_detector: BackendSpec,
        human_classes: tuple[str, ...],
        head_scale: float,
        min_face_fraction: float,
        min_object_fraction: float = 0.1,
        references: int = 1,
    ) -> None:
        self.arguments = dict(
            face_detector=face_detector,
            object_detector=object_detector,
            human_classes=human_classes,
            head_scale=head_scale,
            min_face_fraction=min_face_fraction,
            min_object_fraction=min_object_fraction,
            references=references,
        )
        self.references = references
        self.min_object_fraction = min_object_fraction
        self.face_detector = make_face_detector(face_detector.name, **face_detector.options)
        self.object_detector = make_object_detector(object_detector.name, **object_detector.options)
        self.human_classes = set(human_classes)
        self.head_scale = head_scale
        self.min_face_fraction = min_face_fraction

    def __reduce__(self):
        # Backends hold native handles (OpenCV, ONNX Runtime) that do not pickle: a task rebuilds them.
        return partial(DetectStage, **self.arguments), ()

    def _human(self, image) -> tuple[Box, dict]:
        height, width = image.shape[:2]
        faces = [box for face in self.face_detector.detect(image) if (box := usable_box(face, width, height))]
        if not faces:
            raise Rejected("no_subject", "no face found")
        if len(faces) > 1:
            raise Rejected("several_subjects", f"{len(faces)} faces found")
        face = faces[0]
        if face.width < self.min_face_fraction * min(height, width):
            raise Rejected(
                "subject_too_small",
                f"face is {face.width:.0f} px wide; needs >= {self.min_face_fraction:.0%} of {min(height, width)} px",
            )
        box = usable_box(head_box(face, self.head_scale, width, height), width, height)
        if box is None:
            raise Rejected("no_subject", f"the head box of face {face.as_list()} lies outside the {width}x{height} frame")
        return box, {"face_count": 1, "face_size_px": face.width, "detector": self.face_detector}

    def _object(self, image, class_name: str) -> tuple[Box, dict]:
        height, width = image.shape[:2]
        found = self.object_detector.detect(image, class_name)
        boxes = [box for raw in found if (box := usable_box(raw, width, height))]
        if not boxes:
            off = f" (only empty or off-frame boxes: {[b.as_list() for b in found]})" if found else ""
            raise Rejected("no_subject", f"no {class_name!r} found{off}")
        box = boxes[0]
        least = self.min_object_fraction * min(height, width)
        if min(box.width, box.height) < least:
            raise Rejected(
                "subject_too_small",
                f"the {class_name!r} box is {box.width:.0f}x{box.height:.0f} px; each side needs >= "
                f"{self.min_object_fraction:.0%} of {min(height, width)} px (config `subjects.min_object_fraction`)",
            )
        return box, {"face_count": None, "face_size_px": None, "detector": self.object_detector}

    def process(self, row: dict) -> None:
        is_human = row["subject_class"] in self.human_classes
        failures, kept = [], []
        for frame_index, pixels in zip(row["reference_candidates"], row["candidate_frames"]):
            if len(kept) == self.references:
                break
            image = frame_from_bytes(pixels, row["width"], row["height"])
            try:
                box, found = self._human(image) if is_human else self._object(image, row["subject_class"])
            except Rejected as rejection:
                failures.append((frame_index, rejection))
                continue
            kept.append((frame_index, pixels, box, found))
        if not kept:
            reason = min((r.reason for _, r in failures), key=_REASON_PRIORITY.index)
            details = "; ".join(f"frame {i}: {r.message}" for i, r in failures)
            raise Rejected(reason, f"{row['source_uri']}: no usable reference frame among {len(failures)} candidates ({details}).")
        frame_index, pixels, box, found = kept[0]
        detector = found.pop("detector")
        # Each kept candidate's face facts, so segmentation can re-pick them if it drops the first.
        faces = [{"face_count": k[3].get("face_count"), "face_size_px": k[3].get("face_size_px")} for k in kept]
        row.update(
            reference_faces_json=json.dumps(faces),
            reference_frame_index=frame_index,
            reference_frame_indices=[k[0] for k in kept],
            reference_frames=[k[1] for k in kept],
            candidate_frames=None,  # only the kept ones travel on
            box=box.as_list(),
            reference_boxes=[k[2].as_list() for k in kept],
            detector=detector.name,
            detector_version=detector.version,
            **found,
        )
