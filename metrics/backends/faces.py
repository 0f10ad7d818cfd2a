"""InsightFace `buffalo_l` (SCRFD det_10g + ArcFace R50): the identity embeddings behind Face Sim."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from metrics.backends.base import DetectedFace, check_images, file_digest
from metrics.backends.registry import WeightSource, required_option, weight_at

if TYPE_CHECKING:
    from insightface.app import FaceAnalysis

_STAGE_HINT = (
    "download https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip on a "
    "machine with internet and unzip it so that <model_dir>/det_10g.onnx and <model_dir>/w600k_r50.onnx exist"
)

# The packs insightface publishes (`insightface.utils.storage.model_zoo_download_url`).
INSIGHTFACE_PACKS = ("buffalo_l", "buffalo_m", "buffalo_s", "antelopev2")


def pack_weight(model_dir: str) -> WeightSource:
    """The weight a pack directory is: a present folder as is, a known pack name by its download URL."""
    name = Path(model_dir).expanduser().name
    published = None
    if name in INSIGHTFACE_PACKS and not Path(model_dir).expanduser().exists():
        from insightface.utils.storage import model_zoo_download_url

        published = ("url", model_zoo_download_url(f"{name}.zip"))
    return weight_at("insightface", model_dir, hub=False, published=published)


def load_face_analysis(
    directory: str | Path,
    *,
    modules: tuple[str, ...] = ("detection", "recognition"),
    providers: tuple[str, ...] | list[str] = ("CPUExecutionProvider",),
    det_size: int = 640,
    det_thresh: float = 0.5,
    hint: str = _STAGE_HINT,
) -> FaceAnalysis:
    """insightface's `FaceAnalysis` over a model pack directory (e.g. `buffalo_l`), with only `modules` kept.

    The one loader of the pack: Face Sim's embedder, the preprocessing face detector and IP-Adapter-FaceID's
    face embedding all go through it, so they route the same files to the same models.

    Args:
        directory: The pack's folder, holding its `.onnx` files.
        modules: insightface task names to keep ("detection", "recognition", ...); each must be found.
        providers: ONNX Runtime providers, e.g. ("CUDAExecutionProvider", "CPUExecutionProvider").
        det_size: Square detector input, a multiple of 32 (SCRFD's largest stride); as published: 640.
        det_thresh: Minimum face score the detector keeps, in [0, 1].
        hint: How to stage the pack, appended to every error.

    Returns:
        The prepared `FaceAnalysis`; `app.models[task]` holds each loaded model.
    """
    if not (isinstance(det_size, int) and det_size >= 32 and det_size % 32 == 0):
        raise ValueError(f"`det_size` must be a positive multiple of 32 (SCRFD's largest stride), got {det_size!r}.")
    if not 0 <= det_thresh <= 1:
        raise ValueError(f"`det_thresh` must be in [0, 1], got {det_thresh}.")
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise FileNotFoundError(f"`model_dir` {str(directory)!r} is not a directory; {hint}.")
    try:
        from insightface.app import FaceAnalysis
    except ImportError as error:
        raise ImportError("insightface is not installed: pip install insightface onnxruntime") from error

    try:
        app = FaceAnalysis(name=str(directory), root=str(directory.parent), allowed_modules=list(modules), providers=list(providers))
    except AssertionError:  # FaceAnalysis asserts that a detection model was found
        app = None
    missing = [m for m in modules if app is None or m not in app.models]
    if missing:
        _explain_missing(directory, missing, hint)
    if "recognition" in modules and not getattr(app.det_model, "use_kps", False):
        raise ValueError(
            f"`model_dir` detector {app.det_model.model_file!r} predicts no facial keypoints, which ArcFace needs to align a face; {hint}."
        )
    # ctx_id 0: the providers decide the device (a negative id would force the CPU whatever they say).
    app.prepare(ctx_id=0, det_size=(det_size, det_size), det_thresh=det_thresh)
    return app


def _explain_missing(directory: Path, missing: list[str], hint: str) -> None:
    """Raise saying which files were there and what insightface took each of them for."""
    from insightface import model_zoo

    found = {}
    for path in sorted(directory.glob("*.onnx")):
        try:
            found[path.name] = type(model_zoo.get_model(str(path))).__name__
        except Exception as error:  # a broken file: say so rather than fail on it here
            found[path.name] = f"unreadable ({type(error).__name__})"
    if not found:
        raise FileNotFoundError(f"`model_dir` {str(directory)!r} has no .onnx model (no {' and no '.join(missing)}); {hint}.")
    routed = ", ".join(f"{name} as {kind}" for name, kind in found.items())
    noun = "an SCRFD detection model" if "detection" in missing else f"a {' or '.join(missing)} model"
    files = ", ".join(found)
    raise ValueError(
        f"`model_dir` {str(directory)!r} has no {' and no '.join(missing)} model: {files} "
        f"{'is' if len(found) == 1 else 'are'} not {noun} (insightface loaded {routed}); {hint}."
    )


class InsightFacePack:
    """A backend over one insightface model pack (e.g. `buffalo_l`), loaded by `load_face_analysis`.

    The base of Face Sim's embedder and of the preprocessing face detector: one constructor, one
    loader, and the pack declared as the weights staging fetches.

    Args:
        model_dir (str | Path): The pack's directory; only the models of `modules` are kept.
        det_size (int, default 640): Square detector input (as published: 640); a multiple of 32.
            Larger finds smaller faces at a quadratic cost.
        det_thresh (float, default 0.5): Minimum face score kept.
        providers (tuple[str, ...], default ("CPUExecutionProvider",)): ONNX Runtime providers,
            e.g. ("CUDAExecutionProvider", "CPUExecutionProvider") with onnxruntime-gpu.
    """

    name = "insightface"
    modules: tuple[str, ...] = ("detection", "recognition")
    stage_hint = _STAGE_HINT

    @classmethod
    def weights(cls, options: dict) -> list[WeightSource]:
        """The model pack `model_dir` names."""
        return [pack_weight(required_option(options, "model_dir"))]

    def __init__(
        self, model_dir: str | Path, *, det_size: int = 640, det_thresh: float = 0.5, providers: tuple[str, ...] = ("CPUExecutionProvider",)
    ) -> None:
        self.model_dir = Path(model_dir).expanduser()
        self.det_size, self.det_thresh = det_size, det_thresh
        self._check_pack(self.model_dir)
        self.app = load_face_analysis(
            self.model_dir, modules=self.modules, providers=providers, det_size=det_size, det_thresh=det_thresh, hint=self.stage_hint
        )

    def _check_pack(self, directory: Path) -> None:
        """What a subclass requires of the directory beyond what the loader checks."""


class InsightFaceEmbedder(InsightFacePack):
    """SCRFD faces and their ArcFace embeddings from the pack's detection and recognition models
    (arguments: `InsightFacePack`)."""

    modules = ("detection", "recognition")

    def __init__(
        self, model_dir: str | Path, *, det_size: int = 640, det_thresh: float = 0.5, providers: tuple[str, ...] = ("CPUExecutionProvider",)
    ) -> None:
        import insightface

        super().__init__(model_dir, det_size=det_size, det_thresh=det_thresh, providers=providers)
        files = [self.app.models[task].model_file for task in ("detection", "recognition")]
        self._description = {
            "name": self.name,
            "version": insightface.__version__,
            "model": self.model_dir.name,
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
