"""InsightFace's SCRFD face detector (as shipped in `buffalo_l`), the detector the paper's data used."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metrics.backends.base import file_digest
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


class InsightFaceDetector:
    """Faces by SCRFD through insightface's own ONNX loader and decoding.

    Args:
        model_dir (str | Path): Directory of an insightface model pack (e.g. `buffalo_l`, which
            ships `det_10g.onnx`); only its `det_*.onnx` is loaded.
        det_size (int, default 640): Square detector input; frames are letterboxed into it.
            Larger finds smaller faces at a quadratic cost. Must be a multiple of 32.
        det_thresh (float, default 0.5): Minimum face score kept.
        providers (tuple[str, ...], default ("CPUExecutionProvider",)): ONNX Runtime providers,
            e.g. ("CUDAExecutionProvider", "CPUExecutionProvider") with onnxruntime-gpu.

    Example:
        >>> faces = InsightFaceDetector("models/buffalo_l").detect(frame)  # largest first
    """

    name = "insightface"
    weight_free = False

    def __init__(
        self,
        model_dir: str | Path,
        *,
        det_size: int = 640,
        det_thresh: float = 0.5,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
    ):
        if not (isinstance(det_size, int) and det_size >= 32 and det_size % 32 == 0):
            raise ValueError(f"`det_size` must be a positive multiple of 32 (SCRFD's largest stride), got {det_size!r}.")
        if not 0 <= det_thresh <= 1:
            raise ValueError(f"`det_thresh` must be in [0, 1], got {det_thresh}.")
        model_file = find_detection_model(model_dir)
        model_zoo = require("insightface.model_zoo", "insightface onnxruntime", self.name)
        model = model_zoo.get_model(str(model_file), providers=list(providers))
        if getattr(model, "taskname", None) != "detection":
            raise ValueError(
                f"`model_dir` file {str(model_file)!r} is not an SCRFD detection model "
                f"(insightface loaded it as {type(model).__name__}); stage buffalo_l's det_10g.onnx."
            )
        model.prepare(ctx_id=0, input_size=(det_size, det_size), det_thresh=det_thresh)
        self.model_file = model_file
        self.det_size = det_size
        self.det_thresh = det_thresh
        self.version = file_digest(model_file)
        self._model = model

    def detect(self, image: np.ndarray) -> list[Box]:
        """All faces in `image` (uint8 RGB (H, W, 3)), largest first."""
        check_image(image)
        height, width = image.shape[:2]
        bgr = np.ascontiguousarray(image[..., ::-1])  # insightface takes OpenCV's BGR order
        detections, _ = self._model.detect(bgr, max_num=0)
        boxes = [clip_box(*row[:5], width, height) for row in detections]
        return sorted((b for b in boxes if b is not None), key=lambda b: b.width * b.height, reverse=True)
