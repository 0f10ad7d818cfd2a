"""FaceSim-Cur as OpenS2V-Eval computes it: CurricularFace IR-101 embeddings of ArcFace-aligned faces.

The protocol (OpenS2V-Eval's face-similarity script), step by step:

- frames: 32 evenly spaced indices `linspace(0, F - 1, 32)` truncated to integers (repeats counted);
- detection: insightface `buffalo_l`'s SCRFD at det_size 320, threshold 0.5; the largest box wins
  (ties: the last in detection order). With no face, the image is padded by 25% of its height
  (top, bottom) and width (left, right) in gray 128 and detected again; the keypoints are shifted
  back and the crop is cut from the unpadded image;
- alignment: the 5 keypoints mapped by a least-squares similarity transform onto ArcFace's 112
  template scaled to 224, warped to 224x224 (bilinear, black border), then resized to 112x112
  (bilinear);
- network: RGB in [-1, 1] (x / 255 - 0.5) / 0.5 into the IR-101 of TFace's layout (4 stages of
  3/13/30/3 basic IR blocks, widths 64/128/256/512, a 7x7x512 -> 512 linear head and a BatchNorm1d
  without affine), the 512-d output L2-normalised;
- per frame: cosine with the reference's embedding, clamped at 0; a clamped 0 is dropped, as is a
  frame without a face; the video's `cur_score` is the mean of what is left, 0.0 when nothing is;
- a reference without a face leaves the video out of OpenS2V's result file.

`score` here differs on purpose: the plain mean cosine over the sampled frames with a face (no
clamp, nothing else dropped), None with a reason when no frame or no reference has a face.
`opens2v_score` is what OpenS2V's script writes, zeros included.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metrics.backends.base import DIGEST_CHARS, DetectedFace, check_images, file_digest, is_hub_file, read_state_dict, weight_file
from metrics.backends.faces import InsightFacePack, pack_weight
from metrics.backends.registry import WeightSource, option_or_default
from metrics.video_quality import opens2v_frame_indices

OPENS2V_CURRICULARFACE_WEIGHTS = "BestWishYsh/OpenS2V-Weight/glint360k_curricular_face_r101_backbone.bin"
IR_101_UNITS = (3, 13, 30, 3)
IR_WIDTHS = (64, 128, 256, 512)
EMBEDDING_SIZE = 512
INPUT_SIZE = 112
ALIGN_SIZE = 224  # OpenS2V aligns at 224 and resizes to the network's 112
OPENS2V_FACE_FRAMES = 32
OPENS2V_DET_SIZE = 320
OPENS2V_PAD_SCALE = 1.25
PAD_GRAY = 128
PROTOCOL_VERSION = "opens2v-facesim-cur-1"
# ArcFace's 5-point template (eyes, nose tip, mouth corners) in a 112x112 crop.
ARCFACE_TEMPLATE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64
)
_STAGE_HINT = (
    "`hf download BestWishYsh/OpenS2V-Weight glint360k_curricular_face_r101_backbone.bin` on a machine with internet "
    "(or `videomaker models stage DIR`), then pass the file's path as `weights`"
)


# --- the network -------------------------------------------------------------------------------------------


# The two published layouts of the same IR network, differing only in a batch norm inside each unit:
# "tface": BN-conv-BN-PReLU-conv-BN (`res_layer.0..5`), the file OpenS2V reads;
# "curricularface": BN-conv-PReLU-conv-BN (`res_layer.0..4`), the CurricularFace authors' `CurricularFace_Backbone.pth`.
LAYOUTS = ("tface", "curricularface")


class IRBlock(nn.Module):
    """One basic IR unit: BN-conv-[BN]-PReLU-conv(stride)-BN plus a shortcut (a strided pick, or 1x1 conv + BN)."""

    def __init__(self, in_channels: int, depth: int, stride: int, layout: str = "tface") -> None:
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)  # kernel 1: keeps every stride-th pixel, no weights
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        middle = [nn.BatchNorm2d(depth)] if layout == "tface" else []
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            *middle,
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IRBackbone(nn.Module):
    """The IR network, IR-101 by default: (N, 3, S, S) in [-1, 1] -> (N, embedding_size).

    With layout "tface" its state dict keys are those of OpenS2V's
    `glint360k_curricular_face_r101_backbone.bin`: `input_layer.{0,1,2}`,
    `body.N.shortcut_layer.{0,1}` (first unit of stages 2-4), `body.N.res_layer.{0..5}`,
    `output_layer.{0,3,4}`; with "curricularface" the units hold `res_layer.{0..4}` (no batch
    norm after the first conv), as in the CurricularFace authors' `CurricularFace_Backbone.pth`.

    Args:
        units: Units per stage (IR-101: 3, 13, 30, 3); the first unit of each stage halves the size.
        widths: Channels per stage, growing; the stem has the first stage's width.
        embedding_size: Output width (512).
        input_size: Square input side (112); the head's linear layer reads input_size / 2**stages squared.
        layout: "tface" or "curricularface" (see `LAYOUTS`).
    """

    def __init__(
        self,
        units: tuple[int, ...] = IR_101_UNITS,
        widths: tuple[int, ...] = IR_WIDTHS,
        embedding_size: int = EMBEDDING_SIZE,
        input_size: int = INPUT_SIZE,
        layout: str = "tface",
    ) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"`layout` must be one of {list(LAYOUTS)}, got {layout!r}.")
        if len(units) != len(widths) or not units or min(units) < 1:
            raise ValueError(f"`units` {units} and `widths` {widths} must be equally long, with at least one unit per stage.")
        if input_size % (2 ** len(units)):
            raise ValueError(f"`input_size` {input_size} must be divisible by 2**stages ({2 ** len(units)}).")
        self.input_layer = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.PReLU(widths[0]))
        blocks, channels = [], widths[0]
        for count, width in zip(units, widths):
            for index in range(count):
                blocks.append(IRBlock(channels, width, 2 if index == 0 else 1, layout))
                channels = width
        self.body = nn.Sequential(*blocks)
        side = input_size // 2 ** len(units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.Dropout(0.4),
            nn.Flatten(1),
            nn.Linear(channels * side * side, embedding_size),
            nn.BatchNorm1d(embedding_size, affine=False),
        )
        self.architecture = {
            "units": tuple(units),
            "widths": tuple(widths),
            "embedding_size": embedding_size,
            "input_size": input_size,
            "layout": layout,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.body(self.input_layer(x)))


def architecture_of(state: dict[str, torch.Tensor], source: str = "state dict") -> dict[str, Any]:
    """Stage unit counts, widths, embedding size, input size and layout read off an IR state dict's keys and shapes.

    A stage starts where a unit's width changes, so the widths must grow from stage to stage (as
    IR-18/34/50/100 do) and the first stage must keep the stem's width.
    """
    if "input_layer.0.weight" not in state or "output_layer.3.weight" not in state:
        raise ValueError(
            f"{source} is not an IR backbone (no `input_layer.0.weight` / `output_layer.3.weight`); "
            f"found keys {sorted(state)[:6]}...; OpenS2V's FaceSim-Cur reads {OPENS2V_CURRICULARFACE_WEIGHTS}."
        )
    indices = sorted({int(m.group(1)) for key in state if (m := re.match(r"body\.(\d+)\.", key))})
    if not indices or indices != list(range(len(indices))):
        raise ValueError(f"{source} has no contiguous `body.N` units (found {indices[:10]}).")
    modules = {int(m.group(1)) for key in state if (m := re.match(r"body\.0\.res_layer\.(\d+)\.", key))}  # an SE block adds a 6th
    unit = {
        index: tuple(state[f"body.0.res_layer.{index}.weight"].shape) if f"body.0.res_layer.{index}.weight" in state else None
        for index in modules
    }
    ranks = [len(unit[i]) if unit[i] is not None else None for i in sorted(unit)]
    if ranks == [1, 4, 1, 1, 4, 1]:
        layout = "tface"  # BN, conv, BN, PReLU, conv, BN
    elif ranks == [1, 4, 1, 4, 1] and "body.0.res_layer.2.running_mean" not in state:
        layout = "curricularface"  # BN, conv, PReLU, conv, BN
    else:
        raise ValueError(
            f"{source} has IR units of another layout (`body.0.res_layer` weights {unit}; e.g. an SE or a bottleneck IR): "
            f"only basic IR units load, BN-conv-BN-PReLU-conv-BN (TFace's, as in {OPENS2V_CURRICULARFACE_WEIGHTS}) or "
            f"BN-conv-PReLU-conv-BN (the CurricularFace authors' CurricularFace_Backbone.pth)."
        )
    units, widths = [0], [int(state["input_layer.0.weight"].shape[0])]
    for index in indices:
        width = int(state[f"body.{index}.res_layer.1.weight"].shape[0])
        if index and width != widths[-1]:
            units.append(0)
            widths.append(width)
        units[-1] += 1
    if int(state["body.0.res_layer.1.weight"].shape[0]) != widths[0] or any(b <= a for a, b in zip(widths, widths[1:])):
        raise ValueError(f"{source}: stage widths {widths} must start at the stem's width and grow from stage to stage.")
    linear = state["output_layer.3.weight"]
    side = round((linear.shape[1] / widths[-1]) ** 0.5)
    if side * side * widths[-1] != linear.shape[1]:
        raise ValueError(f"{source}: `output_layer.3.weight` {tuple(linear.shape)} does not read {widths[-1]} x side x side features.")
    size = side * 2 ** len(units)
    return {"units": tuple(units), "widths": tuple(widths), "embedding_size": int(linear.shape[0]), "input_size": size, "layout": layout}


def read_curricularface_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The backbone's tensors from a torch file (`.bin` / `.pth`), a `module.` prefix (DataParallel) removed."""
    return read_state_dict(path, expected="the CurricularFace IR-101 state dict", refetch=_STAGE_HINT)


def load_curricularface(path: str | Path, device: str = "cpu") -> nn.Module:
    """The IR backbone built from the file's own layer counts and loaded with strict=True, in eval mode."""
    state = read_curricularface_state_dict(path)
    architecture = architecture_of(state, f"`weights` {str(path)!r}")
    model = IRBackbone(**architecture)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"`weights` {str(path)!r} does not fit an IR backbone {architecture}: {error}") from None
    return model.to(device).eval()


# --- alignment -----------------------------------------------------------------------------------------------


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity (rotation, uniform scale, translation) mapping `source` onto `target`.

    Umeyama's closed form: centre both point sets, take the SVD of their covariance, keep a proper
    rotation (a reflection is flipped out), then scale and shift.
    """
    source, target = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or len(source) < 2:
        raise ValueError(f"`source` {source.shape} and `target` {target.shape} must be the same (N >= 2, 2) point sets.")
    mean_s, mean_t = source.mean(0), target.mean(0)
    centred_s, centred_t = source - mean_s, target - mean_t
    covariance = centred_t.T @ centred_s / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(covariance) < 0:
        sign[-1] = -1
    rotation = u @ np.diag(sign) @ vt
    variance = (centred_s**2).sum() / len(source)
    scale = (singular * sign).sum() / variance if variance > 0 else 1.0
    shift = mean_t - scale * rotation @ mean_s
    return np.hstack([scale * rotation, shift[:, None]])


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = ALIGN_SIZE, output_size: int = INPUT_SIZE) -> np.ndarray:
    """uint8 (H, W, 3) image -> the (output_size, output_size, 3) crop OpenS2V feeds CurricularFace.

    The landmarks go onto ArcFace's template scaled to `size` (bilinear warp, black outside the
    image), then the crop is resized to `output_size` (bilinear), as the reference does.
    """
    import cv2

    landmarks = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if landmarks.shape != (5, 2):
        raise ValueError(f"`landmarks` must be 5 (x, y) points (eyes, nose, mouth corners), got shape {landmarks.shape}.")
    if size % 112:
        raise ValueError(f"`size` must be a multiple of 112 (ArcFace's template), got {size}.")
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE_112 * (size / 112.0))
    warped = cv2.warpAffine(np.ascontiguousarray(image), matrix, (size, size), borderValue=0.0)
    return warped if output_size == size else cv2.resize(warped, (output_size, output_size))


def pad_for_detection(image: np.ndarray, scale: float = OPENS2V_PAD_SCALE) -> tuple[np.ndarray, tuple[int, int]]:
    """The image with gray borders of (scale - 1) x its height (top and bottom) and width (left and right), and (left, top)."""
    import cv2

    if scale < 1:
        raise ValueError(f"`pad_scale` must be >= 1, got {scale}.")
    height, width = image.shape[:2]
    top, left = int(height * (scale - 1.0)), int(width * (scale - 1.0))
    padded = cv2.copyMakeBorder(image, top, top, left, left, cv2.BORDER_CONSTANT, value=(PAD_GRAY,) * 3)
    return padded, (left, top)


# --- per-video values ----------------------------------------------------------------------------------------


def opens2v_cur_score(similarities: list[float | None]) -> float:
    """OpenS2V's `cur_score` from per-sample cosines (None: no face): clamp at 0, drop zeros and None, mean; 0.0 if empty."""
    kept = [max(0.0, s) for s in similarities if s is not None]
    kept = [s for s in kept if s != 0.0]
    return float(np.mean(kept)) if kept else 0.0


def mean_face_similarity(similarities: list[float | None]) -> float | None:
    """This project's FaceSim-Cur of a video: the mean cosine over the samples with a face, None if none has one."""
    found = [s for s in similarities if s is not None]
    return float(np.mean(found)) if found else None


@dataclass(frozen=True)
class FaceEvidence:
    """One frame (or the reference): the face used, if any, and its cosine with the reference.

    `padded` says the face was found only in the gray-padded image (box and landmarks are in the
    unpadded image's pixels); `samples` is how often OpenS2V's sampling reads this frame.
    """

    index: int
    face_found: bool
    box: tuple[float, float, float, float] | None = None
    det_score: float | None = None
    padded: bool = False
    similarity: float | None = None
    samples: int = 1


@dataclass(frozen=True)
class CurReference:
    """A reference image's face and its unit CurricularFace embedding (None with a reason when no face)."""

    embedding: np.ndarray | None
    face: FaceEvidence
    reason: str | None = None


@dataclass(frozen=True)
class CurFaceSimScore:
    """A video's FaceSim-Cur and its evidence.

    Attributes:
        score: Mean cosine over the sampled frames with a face (repeats counted); None when the
            reference or every sampled frame has no face (`reason` says which).
        reason: Why `score` is None; None otherwise.
        opens2v_score: What OpenS2V's script writes as `cur_score`: 0.0 when no frame has a face;
            None when the reference has none (OpenS2V leaves the video out).
        frames: Evidence per distinct sampled frame, in frame order.
        indices: The sampled frame indices, with repeats.
        reference: The reference face's evidence.
    """

    score: float | None
    reason: str | None
    opens2v_score: float | None
    frames: tuple[FaceEvidence, ...]
    indices: tuple[int, ...]
    reference: FaceEvidence

    @property
    def frames_with_face(self) -> int:
        return sum(frame.face_found for frame in self.frames)


class _FaceDetector(InsightFacePack):
    """The project's insightface pack, detection model only (OpenS2V's FaceAnalysis detects with the pack's SCRFD)."""

    modules = ("detection",)


class CurricularFaceSim:
    """FaceSim-Cur: CurricularFace IR-101 cosines between the reference's face and each sampled frame's face.

    Args:
        weights (str, default "BestWishYsh/OpenS2V-Weight/glint360k_curricular_face_r101_backbone.bin"):
            The backbone's state dict: a local file, or OWNER/REPO/FILE of a hub file (read from the
            Hugging Face cache, else downloaded). Its layer counts are read from the file.
        model_dir (str, default "~/.insightface/models/buffalo_l"): The insightface pack whose SCRFD
            detects faces and their 5 keypoints (OpenS2V: buffalo_l).
        det_size (int, default 320): Detector input side; OpenS2V's is 320 (Face Sim's ArcFace uses 640).
        det_thresh (float, default 0.5): Minimum detection score.
        num_frames (int, default 32): Frames sampled, evenly spaced with repeats.
        pad_scale (float, default 1.25): Border added for the second detection try; 1 disables it.
        device (str, default "cpu"): Torch device of the backbone.
        batch_size (int, default 32): Faces per forward.
        providers (tuple[str, ...], default ("CPUExecutionProvider",)): ONNX Runtime providers of the detector.
    """

    name = "curricularface"

    @classmethod
    def weights(cls, options: dict) -> list[WeightSource]:
        """The backbone file (hub file or local) and the detector's insightface pack (the same entry Face Sim's pack has)."""
        weights = str(option_or_default(cls, options, "weights"))
        kind = "local" if not is_hub_file(weights) else "hf-file"
        return [WeightSource("curricularface", kind, weights), pack_weight(str(option_or_default(cls, options, "model_dir")))]

    def __init__(
        self,
        weights: str = OPENS2V_CURRICULARFACE_WEIGHTS,
        *,
        model_dir: str = "~/.insightface/models/buffalo_l",
        det_size: int = OPENS2V_DET_SIZE,
        det_thresh: float = 0.5,
        num_frames: int = OPENS2V_FACE_FRAMES,
        pad_scale: float = OPENS2V_PAD_SCALE,
        device: str = "cpu",
        batch_size: int = 32,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
    ) -> None:
        if not (isinstance(num_frames, int) and num_frames >= 1):
            raise ValueError(f"`num_frames` must be an integer >= 1, got {num_frames!r}.")
        if not (isinstance(batch_size, int) and batch_size >= 1):
            raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}.")
        if pad_scale < 1:
            raise ValueError(f"`pad_scale` must be >= 1 (1: no second try), got {pad_scale}.")
        path = weight_file(weights)
        self.model = load_curricularface(path, device)
        self.input_size = self.model.architecture["input_size"]
        self.detector = _FaceDetector(model_dir, det_size=det_size, det_thresh=det_thresh, providers=tuple(providers))
        self.device = torch.device(device)
        self.num_frames, self.pad_scale, self.batch_size = num_frames, pad_scale, batch_size
        weights_digest = file_digest(path)
        detector_digest = file_digest(self.detector.app.det_model.model_file)
        protocol = f"{PROTOCOL_VERSION}|{det_size}|{det_thresh}|{num_frames}|{pad_scale}|{ALIGN_SIZE}|{self.input_size}"
        self.digest = "sha256:" + hashlib.sha256(f"{weights_digest}|{detector_digest}|{protocol}".encode()).hexdigest()[:DIGEST_CHARS]
        self._description = {
            "name": self.name,
            "version": torch.__version__,
            "model": "CurricularFace IR on ArcFace-aligned insightface crops (OpenS2V FaceSim-Cur)",
            "weights": weights,
            "digest": self.digest,
            "weights_digest": weights_digest,
            "architecture": dict(self.model.architecture),
            "detector": Path(self.detector.app.det_model.model_file).name,
            "detector_digest": detector_digest,
            "det_size": det_size,
            "det_thresh": det_thresh,
            "num_frames": num_frames,
            "pad_scale": pad_scale,
        }

    def describe(self) -> dict:
        return dict(self._description)

    # FaceEmbedder-style pieces ---------------------------------------------------------------------------------

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face SCRFD finds in a uint8 RGB image, in detection order (no padding retry)."""
        (image,) = check_images([image], "image")
        return self._detect_bgr(np.ascontiguousarray(image[..., ::-1]))

    def _detect_bgr(self, bgr: np.ndarray) -> list[DetectedFace]:
        boxes, keypoints = self.detector.app.det_model.detect(bgr, max_num=0)
        if keypoints is None:
            raise ValueError(f"The detector {self.detector.app.det_model.model_file!r} predicts no keypoints; alignment needs them.")
        return [DetectedFace(*map(float, box[:5]), landmarks=np.asarray(points, dtype=np.float64)) for box, points in zip(boxes, keypoints)]

    def find_face(self, image: np.ndarray) -> tuple[DetectedFace | None, bool]:
        """OpenS2V's face of an image and whether padding was needed: the largest box (ties: the last found), retried padded."""
        (image,) = check_images([image], "image")
        bgr = np.ascontiguousarray(image[..., ::-1])
        face = _largest(self._detect_bgr(bgr))
        if face is not None or self.pad_scale == 1:
            return face, False
        padded, (left, top) = pad_for_detection(bgr, self.pad_scale)
        face = _largest(self._detect_bgr(padded))
        if face is None:
            return None, False
        shifted = DetectedFace(
            face.x0 - left, face.y0 - top, face.x1 - left, face.y1 - top, face.score, landmarks=face.landmarks - np.array([left, top])
        )
        return shifted, True

    def embed_aligned(self, crops: list[np.ndarray]) -> np.ndarray:
        """Aligned uint8 RGB (S, S, 3) crops (S = the network's input, 112) -> (N, D) unit embeddings."""
        crops = check_images(crops, "crops")
        for index, crop in enumerate(crops):
            if crop.shape[:2] != (self.input_size, self.input_size):
                raise ValueError(
                    f"`crops[{index}]` is {crop.shape[:2]}; the network takes {self.input_size}x{self.input_size} aligned faces."
                )
        out = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                batch = torch.from_numpy(np.stack(crops[start : start + self.batch_size])).permute(0, 3, 1, 2).float()
                batch = (batch / 255.0 - 0.5) / 0.5
                out.append(self.model(batch.to(self.device)).float().cpu().numpy())
        embeddings = np.concatenate(out)
        return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)

    def embed(self, image: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The unit embedding of one detected face of a uint8 RGB image."""
        (image,) = check_images([image], "image")
        return self.embed_aligned([align_face(image, face.landmarks, ALIGN_SIZE, self.input_size)])[0]

    # OpenS2V's protocol ---------------------------------------------------------------------------------------

    def reference(self, image: np.ndarray) -> CurReference:
        """The reference image's face and embedding; no face gives `embedding` None and a reason."""
        face, padded = self.find_face(image)
        if face is None:
            how = f" (also after padding by {self.pad_scale - 1:.0%})" if self.pad_scale > 1 else ""
            return CurReference(None, FaceEvidence(-1, False), f"no face found in the reference image{how}")
        return CurReference(self.embed(image, face), _evidence(-1, face, padded))

    def score_video(self, frames: np.ndarray, reference: np.ndarray | CurReference) -> CurFaceSimScore:
        """FaceSim-Cur of a uint8 RGB (F, H, W, 3) video against a reference image (or its `reference()`).

        Each distinct sampled frame is detected and embedded once; its cosine counts as often as
        the sampling reads it.
        """
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
            raise ValueError(f"`frames` must be uint8 RGB (F, H, W, 3), got {frames.dtype} {frames.shape}.")
        if not isinstance(reference, CurReference):
            reference = self.reference(reference)
        indices = opens2v_frame_indices(frames.shape[0], self.num_frames)
        distinct, counts = np.unique(indices, return_counts=True)
        found = [(int(i), int(c), *self.find_face(frames[i])) for i, c in zip(distinct, counts)]
        if reference.embedding is None:  # the frames' faces are still recorded, without similarities
            evidence = tuple(
                _evidence(i, face, padded, None, c) if face is not None else FaceEvidence(i, False, samples=c)
                for i, c, face, padded in found
            )
            return CurFaceSimScore(
                None, f"{reference.reason}; OpenS2V leaves such a video out", None, evidence, tuple(map(int, indices)), reference.face
            )
        with_face = [item for item in found if item[2] is not None]
        similarities: dict[int, float] = {}
        if with_face:
            crops = [align_face(frames[i], face.landmarks, ALIGN_SIZE, self.input_size) for i, _, face, _ in with_face]
            cosines = self.embed_aligned(crops) @ reference.embedding
            similarities = {item[0]: float(c) for item, c in zip(with_face, cosines)}
        evidence = tuple(
            _evidence(i, face, padded, similarities[i], c) if face is not None else FaceEvidence(i, False, samples=c)
            for i, c, face, padded in found
        )
        per_sample = [similarities.get(int(i)) for i in indices]
        score = mean_face_similarity(per_sample)
        reason = None
        if score is None:
            reason = f"no face in any of the {len(distinct)} sampled frames ({_frame_list(distinct)})"
        return CurFaceSimScore(score, reason, opens2v_cur_score(per_sample), evidence, tuple(map(int, indices)), reference.face)


def _largest(faces: list[DetectedFace]) -> DetectedFace | None:
    if not faces:
        return None
    areas = np.array([face.area for face in faces])
    return faces[len(faces) - 1 - int(np.argmax(areas[::-1]))]  # the last of the largest, as a stable sort's [-1]


def _evidence(index: int, face: DetectedFace, padded: bool, similarity: float | None = None, samples: int = 1) -> FaceEvidence:
    return FaceEvidence(index, True, (face.x0, face.y0, face.x1, face.y1), face.score, padded, similarity, samples)


def _frame_list(indices: np.ndarray, limit: int = 8) -> str:
    shown = ", ".join(str(int(i)) for i in indices[:limit])
    return f"frames {shown}" + (", ..." if len(indices) > limit else "")
