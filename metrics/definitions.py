"""The embedding metrics of docs/method.md, section 7 as pure functions of embeddings.

Each takes the backend's raw embeddings (rows = frames) and returns a float in [-1, 1]; cosines
are taken in float64 so a score does not depend on the batch it was computed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike


def _rows(embeddings, argument: str) -> np.ndarray:
    array = np.asarray(embeddings, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"`{argument}` must be a non-empty (frames, dim) array, got shape {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"`{argument}` holds NaN or inf values.")
    return array


def _unit(array: np.ndarray, argument: str) -> np.ndarray:
    norms = np.linalg.norm(array, axis=-1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"`{argument}` has an all-zero embedding; its cosine is undefined.")
    return array / norms


def cosines_to(frame_embeddings: ArrayLike, target_embedding: ArrayLike, *, argument: str = "target_embedding") -> np.ndarray:
    """Per frame, cos(frame, target) in float64: the values `mean_cosine_to` averages (a record's per-frame evidence)."""
    frames = _unit(_rows(frame_embeddings, "frame_embeddings"), "frame_embeddings")
    target = _unit(_rows(np.reshape(target_embedding, (1, -1)), argument), argument)
    if target.shape[1] != frames.shape[1]:
        raise ValueError(f"`{argument}` has dimension {target.shape[1]} but the frame embeddings have {frames.shape[1]}.")
    return frames @ target[0]


def mean_cosine_to(frame_embeddings: ArrayLike, target_embedding: ArrayLike, *, argument: str = "target_embedding") -> float:
    """Mean over frames of cos(frame, target): CLIP-T, CLIP-I and DINO-I are all this shape."""
    return float(cosines_to(frame_embeddings, target_embedding, argument=argument).mean())


def clip_t(frame_embeddings: ArrayLike, text_embedding: ArrayLike) -> float:
    """CLIP-T: mean over frames of cos(image_emb(frame), text_emb(prompt)); raw cosine, not x100."""
    return mean_cosine_to(frame_embeddings, text_embedding, argument="text_embedding")


def clip_i(frame_embeddings: ArrayLike, reference_embedding: ArrayLike) -> float:
    """CLIP-I: mean over frames of cos(image_emb(frame), image_emb(reference))."""
    return mean_cosine_to(frame_embeddings, reference_embedding, argument="reference_embedding")


def dino_i(frame_embeddings: ArrayLike, reference_embedding: ArrayLike) -> float:
    """DINO-I: mean over frames of cos(CLS(frame), CLS(reference))."""
    return mean_cosine_to(frame_embeddings, reference_embedding, argument="reference_embedding")


def temporal_consistency(frame_embeddings: ArrayLike) -> float:
    """T.Cons: mean over the consecutive pairs of cos(emb(f_i), emb(f_i+1))."""
    frames = _unit(_rows(frame_embeddings, "frame_embeddings"), "frame_embeddings")
    if frames.shape[0] < 2:
        raise ValueError(f"`frame_embeddings` needs at least 2 frames for T.Cons, got {frames.shape[0]}.")
    return float(np.einsum("nd,nd->n", frames[:-1], frames[1:]).mean())


FaceStatus = Literal["scored", "no_face_in_video", "reference_has_no_face"]


@dataclass(frozen=True)
class FaceSimilarity:
    """Face Sim of one video with what it rests on.

    `score` is None unless `status == "scored"`: a video with no face anywhere is excluded from
    the average, never scored 0, and a reference without a face cannot be compared at all.
    `frame_scores` holds, per frame, the cosine `score` averages (None for a frame without a face,
    and for every frame when the reference has none).
    """

    score: float | None
    status: FaceStatus
    frames_with_face: int
    frames: int
    frame_scores: tuple[float | None, ...] = ()

    @property
    def detection_rate(self) -> float:
        return self.frames_with_face / self.frames


def face_similarity(frame_faces: Sequence[np.ndarray | None], reference_face: np.ndarray | None) -> FaceSimilarity:
    """Face Sim: mean over frames with a face of cos(the frame's face, reference face); raw cosines, negatives kept.

    Which face of each image counts is the protocol's choice (`metrics.suite`): the largest in
    frames, the first detected or the largest in the reference.

    Args:
        frame_faces: Per frame, the embedding of its face, or None.
        reference_face: The embedding of the reference's face, or None when it has none.
    """
    if len(frame_faces) == 0:
        raise ValueError("`frame_faces` is empty; pass one entry (embedding or None) per frame.")
    found = [face for face in frame_faces if face is not None]
    none = (None,) * len(frame_faces)
    if reference_face is None:
        return FaceSimilarity(None, "reference_has_no_face", len(found), len(frame_faces), none)
    if not found:
        return FaceSimilarity(None, "no_face_in_video", 0, len(frame_faces), none)
    cosines = iter(cosines_to(np.stack(found), reference_face, argument="reference_face"))
    frame_scores = tuple(None if face is None else float(next(cosines)) for face in frame_faces)
    score = float(np.mean([s for s in frame_scores if s is not None]))
    return FaceSimilarity(score, "scored", len(found), len(frame_faces), frame_scores)
