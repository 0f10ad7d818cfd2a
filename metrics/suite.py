"""All six metrics of a batch of videos in one pass.

One CLIP image forward per frame serves CLIP-T, CLIP-I and T.Cons; references and prompts are
embedded once and cached; frames of every video in the batch go through each model together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from metrics.backends import MetricBackends
from metrics.backends.base import FaceEmbedder
from metrics.definitions import FaceSimilarity, clip_i, clip_t, dino_i, face_similarity, temporal_consistency
from metrics.dynamic_degree import DynamicVerdict, judge_video, pair_score


@dataclass
class VideoToScore:
    """One generated video and what it is compared with.

    Args:
        frames: uint8 RGB (F, H, W, 3), every frame of the video.
        prompt: The prompt it was generated from (CLIP-T).
        reference: uint8 RGB (H, W, 3) reference image (CLIP-I, DINO-I, Face Sim).
        score_faces: Compute Face Sim (human subjects); objects have none.
    """

    frames: np.ndarray
    prompt: str
    reference: np.ndarray
    score_faces: bool = True


@dataclass(frozen=True)
class VideoScores:
    """The metrics of one video; `face` is None when faces were not scored."""

    clip_t: float
    clip_i: float
    dino_i: float
    t_cons: float
    face: FaceSimilarity | None
    dynamics: DynamicVerdict
    num_frames: int
    height: int
    width: int


@dataclass
class _ReferenceEmbeddings:
    clip: np.ndarray
    dino: np.ndarray
    face: np.ndarray | None = None
    face_done: bool = False


def _check(video: VideoToScore, index: int) -> None:
    frames = video.frames
    if not (isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3):
        raise ValueError(f"`videos[{index}].frames` must be uint8 RGB (F, H, W, 3), got {getattr(frames, 'shape', None)}.")
    if frames.shape[0] < 2:
        raise ValueError(f"`videos[{index}].frames` has {frames.shape[0]} frame(s); T.Cons and DD need at least 2.")
    reference = video.reference
    if not (isinstance(reference, np.ndarray) and reference.dtype == np.uint8 and reference.ndim == 3 and reference.shape[-1] == 3):
        raise ValueError(f"`videos[{index}].reference` must be a uint8 RGB (H, W, 3) image, got {getattr(reference, 'shape', None)}.")
    if not isinstance(video.prompt, str) or not video.prompt.strip():
        raise ValueError(f"`videos[{index}].prompt` must be a non-empty string, got {video.prompt!r}.")


def largest_face_embedding(backend: FaceEmbedder, image: np.ndarray) -> np.ndarray | None:
    """The embedding of the largest face in `image` (SPEC: the largest face counts), or None."""
    faces = backend.detect(image)
    if not faces:
        return None
    return backend.embed(image, max(faces, key=lambda face: face.area))


def _image_key(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest()


class MetricSuite:
    """Scores videos with loaded backends, caching reference and prompt embeddings across calls.

    Example:
        >>> suite = MetricSuite(load_backends(MetricBackendsConfig()))
        >>> scores = suite.score([VideoToScore(frames, "A person wearing sunglasses.", reference)])
    """

    def __init__(self, backends: MetricBackends):
        self.backends = backends
        self._references: dict[str, _ReferenceEmbeddings] = {}
        self._prompts: dict[str, np.ndarray] = {}

    def score(self, videos: list[VideoToScore]) -> list[VideoScores]:
        for index, video in enumerate(videos):
            _check(video, index)
        reference_keys = [_image_key(v.reference) for v in videos]
        self._embed_new_references(videos, reference_keys)
        self._embed_new_prompts([v.prompt for v in videos])

        all_frames = [frame for video in videos for frame in video.frames]
        clip_frames = self.backends.clip.embed_images(all_frames)
        dino_frames = self.backends.dino.embed_images(all_frames)

        results, start = [], 0
        for video, key in zip(videos, reference_keys):
            count, height, width = video.frames.shape[:3]
            clip_emb, dino_emb = clip_frames[start : start + count], dino_frames[start : start + count]
            start += count
            reference = self._references[key]
            results.append(
                VideoScores(
                    clip_t=clip_t(clip_emb, self._prompts[video.prompt]),
                    clip_i=clip_i(clip_emb, reference.clip),
                    dino_i=dino_i(dino_emb, reference.dino),
                    t_cons=temporal_consistency(clip_emb),
                    face=self._face_similarity(video, reference),
                    dynamics=self._dynamics(video.frames),
                    num_frames=count,
                    height=height,
                    width=width,
                )
            )
        return results

    def _embed_new_references(self, videos: list[VideoToScore], keys: list[str]) -> None:
        new = {key: video.reference for key, video in zip(keys, videos) if key not in self._references}
        if not new:
            return
        images = list(new.values())
        clip_refs = self.backends.clip.embed_images(images)
        dino_refs = self.backends.dino.embed_images(images)
        for key, clip_ref, dino_ref in zip(new, clip_refs, dino_refs):
            self._references[key] = _ReferenceEmbeddings(clip_ref, dino_ref)

    def _embed_new_prompts(self, prompts: list[str]) -> None:
        new = list(dict.fromkeys(p for p in prompts if p not in self._prompts))
        if new:
            self._prompts.update(zip(new, self.backends.clip.embed_texts(new)))

    def _face_similarity(self, video: VideoToScore, reference: _ReferenceEmbeddings) -> FaceSimilarity | None:
        face = self.backends.face
        if face is None or not video.score_faces:
            return None
        if not reference.face_done:
            reference.face, reference.face_done = largest_face_embedding(face, video.reference), True
        # Frames are searched even when the reference has no face: the detection rate stays true.
        return face_similarity([largest_face_embedding(face, frame) for frame in video.frames], reference.face)

    def _dynamics(self, frames: np.ndarray) -> DynamicVerdict:
        flows = self.backends.flow.consecutive_flows(frames)
        count, height, width = frames.shape[:3]
        return judge_video([pair_score(flow) for flow in flows], height=height, width=width, num_frames=count)
