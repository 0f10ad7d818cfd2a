"""InsightFace `buffalo_l` (SCRFD det_10g + ArcFace R50): the identity embeddings behind Face Sim."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metrics.backends.base import DetectedFace, check_images, file_digest

_STAGE_HINT = (
    "download https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip on a "
    "machine with internet and unzip it so that <model_dir>/det_10g.onnx and <model_dir>/w600k_r50.onnx exist"
)


class InsightFaceEmbedder:
    """SCRFD faces and their ArcFace embeddings, through insightface's `FaceAnalysis` loader.

    Args:
        model_dir (str | Path): An insightface model pack directory such as `buffalo_l`; only its
            detection and recognition models are loaded.
        det_size (int, default 640): Square detector input (as published: 640).
        det_thresh (float, default 0.5): Minimum face score kept.
        providers (tuple[str, ...], default ("CPUExecutionProvider",)): ONNX Runtime providers.
    """

    name = "insightface"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        det_size: int = 640,
        det_thresh: float = 0.5,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
    ):
        import insightface
        from insightface.app import FaceAnalysis

        directory = Path(model_dir).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(f"`model_dir` {str(directory)!r} is not a directory; {_STAGE_HINT}.")
        if det_size < 32 or det_size % 32:
            raise ValueError(f"`det_size` must be a positive multiple of 32, got {det_size}.")
        self.app = FaceAnalysis(name=str(directory), allowed_modules=["detection", "recognition"], providers=list(providers))
        missing = {"detection", "recognition"} - set(self.app.models)
        if missing:
            raise FileNotFoundError(
                f"`model_dir` {str(directory)!r} has no {' and no '.join(sorted(missing))} model; {_STAGE_HINT}."
            )
        if not getattr(self.app.det_model, "use_kps", False):
            raise ValueError(
                f"`model_dir` detector {self.app.det_model.model_file!r} predicts no facial keypoints, which "
                f"ArcFace needs to align a face; {_STAGE_HINT}."
            )
        self.app.prepare(ctx_id=-1, det_size=(det_size, det_size), det_thresh=det_thresh)
        files = [self.app.models[task].model_file for task in ("detection", "recognition")]
        self._description = {
            "name": self.name,
            "version": insightface.__version__,
            "model": directory.name,
            "weights": [Path(f).name for f in files],
            "digest": file_digest(*files),
            "det_size": det_size,
            "det_thresh": det_thresh,
        }

    def describe(self) -> dict:
        return dict(self._description)

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        (image,) = check_images([image], "image")
        boxes, keypoints = self.app.det_model.detect(_bgr(image), max_num=0)
        return [DetectedFace(*map(float, box[:5]), landmarks=points) for box, points in zip(boxes, keypoints)]

    def embed(self, image: np.ndarray, face: DetectedFace) -> np.ndarray:
        from insightface.app.common import Face

        (image,) = check_images([image], "image")
        found = Face(bbox=np.array([face.x0, face.y0, face.x1, face.y1]), kps=face.landmarks, det_score=face.score)
        self.app.models["recognition"].get(_bgr(image), found)  # aligns on the keypoints, then ArcFace
        return np.asarray(found.normed_embedding, dtype=np.float32)


def _bgr(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[..., ::-1])  # insightface takes OpenCV's BGR order
