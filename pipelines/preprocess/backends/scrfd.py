"""InsightFace's SCRFD face detector (as shipped in `buffalo_l`), the detector the paper's data used."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metrics.backends.base import file_digest
from metrics.backends.faces import InsightFacePack
from pipelines.preprocess.backends._common import clip_box, require
from pipelines.preprocess.backends.base import Box, check_image

_STAGE_HINT = (
    "stage insightface's buffalo_l there: download "
    "https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip on a machine with "
    "internet and unzip it so that <model_dir>/det_10g.onnx exists"
)


def find_detection_model(model_dir: str | Path) -> Path:
    """The single `det_*.onnx` of an insightface model pack directory."""
    directory = Path(model_dir).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"`model_dir` {str(directory)!r} is not a directory; {_STAGE_HINT}.")
    found = sorted(directory.glob("det_*.onnx"))
    if len(found) != 1:
        names = [p.name for p in found]
        raise FileNotFoundError(
            f"`model_dir` {str(directory)!r} must hold exactly one det_*.onnx detection model, found {names}; {_STAGE_HINT}."
        )
    return found[0]


class InsightFaceDetector(InsightFacePack):
    """Faces by SCRFD, the pack's `det_*.onnx` alone, through insightface's loader and decoding.

    Args: those of `metrics.backends.faces.InsightFacePack`; `model_dir` must hold exactly one
    `det_*.onnx` (buffalo_l ships `det_10g.onnx`), and frames are letterboxed into `det_size`.

    Example:
        >>> faces = InsightFaceDetector("models/buffalo_l").detect(frame)  # largest first
    """

    weight_free = False
    modules = ("detection",)
    stage_hint = _STAGE_HINT

    def _check_pack(self, directory: Path) -> None:
        self.model_file = find_detection_model(directory)  # the pack must say which detector it means
        require("insightface.app", "insightface onnxruntime", self.name)
        self.version = file_digest(self.model_file)

    @property
    def _model(self):
        return self.app.models["detection"]

    def detect(self, image: np.ndarray) -> list[Box]:
        """All faces in `image` (uint8 RGB (H, W, 3)), largest first."""
        check_image(image)
        height, width = image.shape[:2]
        bgr = np.ascontiguousarray(image[..., ::-1])  # insightface takes OpenCV's BGR order
        detections, _ = self._model.detect(bgr, max_num=0)
        boxes = [clip_box(*row[:5], width, height) for row in detections]
        return sorted((b for b in boxes if b is not None), key=lambda b: b.width * b.height, reverse=True)
