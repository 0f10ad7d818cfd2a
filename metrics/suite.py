"""All six metrics of a batch of videos in one pass.

One CLIP image forward per frame serves CLIP-T, CLIP-I and T.Cons; references and prompts are
embedded once and cached; frames of every video in the batch go through each model together.

Face Sim follows one of two protocols (`FACE_PROTOCOLS`):
- `paper`: the author's evaluation steps, so a score is comparable with the published tables.
  insightface was handed RGB arrays where it expects BGR; the reference was resized to 512x512
  (PIL bicubic) and its first detected face used (the detector's order: highest score after NMS);
  each frame's largest face (the last of a stable sort by box area, as `sorted(...)[-1]` picks).
- `corrected`: BGR as insightface expects, the reference as read, the largest face everywhere.
Both skip frames without a face, keep negative cosines and exclude a video with no face at all.

The paper's six are always computed. Opt-in groups (`METRIC_GROUPS`) add newer metrics in the same
pass, reusing its frames and embeddings (docs/metrics_opens2v.md): `vbench` (temporal flickering,
I2V subject consistency from the DINO embeddings already computed) and `opens2v` (motion amplitude,
and the aesthetic score, FaceSim-Cur and NaturalScore when their backends are configured).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from metrics.backends import MetricBackends
from metrics.backends.base import DetectedFace, FaceEmbedder
from metrics.definitions import FaceSimilarity, clip_i, clip_t, cosines_to, dino_i, face_similarity, temporal_consistency
from metrics.dynamic_degree import DynamicVerdict, flow_threshold, judge_video, pair_score

PAPER_METRICS = ("clip_t", "clip_i", "dino_i", "t_cons", "face_sim", "dd")
METRIC_GROUPS = {
    "paper": PAPER_METRICS,
    "vbench": ("temporal_flickering", "i2v_subject"),
    "opens2v": ("motion_amplitude", "aes_score", "facesim_cur", "natural_score"),
}
# Metrics of a group that need a backend of their own (`MetricBackendsConfig.<role>`); not computed without it.
GROUP_BACKENDS = {"aes_score": "aesthetic", "facesim_cur": "face_cur", "natural_score": "natural"}
# How the note of a metric left empty starts in a record's `message` (the grid page picks each metric's own).
METRIC_NOTES = {"facesim_cur": "FaceSim-Cur:", "natural_score": "NaturalScore:"}

FaceProtocol = Literal["paper", "corrected"]
FACE_PROTOCOLS = ("paper", "corrected")
PAPER_REFERENCE_SIZE = 512  # the author's load_image(...).resize((512, 512)) before detection


@dataclass
class VideoToScore:
    """One generated video and what it is compared with.

    Args:
        frames: uint8 RGB (F, H, W, 3), every frame of the video.
        prompt: The prompt it was generated from (CLIP-T).
        reference: uint8 RGB (H, W, 3) reference image (CLIP-I, DINO-I, Face Sim).
        score_faces: Compute Face Sim (human subjects); objects have none.
        dd_frames: uint8 RGB (F', H', W', 3) frames DD reads instead of `frames` (the saved GIF's,
            as published); None: `frames`. May hold a single frame (a GIF whose frames were all
            merged, read as decoded), which has no pair and is not dynamic.
    """

    frames: np.ndarray
    prompt: str
    reference: np.ndarray
    score_faces: bool = True
    dd_frames: np.ndarray | None = None


@dataclass(frozen=True)
class VideoScores:
    """The metrics of one video; `face` is None when faces were not scored.

    The per-frame evidence comes from the same pass: `clip_i_frames` / `dino_i_frames` are the
    cosines CLIP-I / DINO-I average, `face_detections` the face each frame's protocol used (None:
    no face found; empty when faces were not scored), `face.frame_scores` their similarities.
    """

    clip_t: float
    clip_i: float
    dino_i: float
    t_cons: float
    face: FaceSimilarity | None
    dynamics: DynamicVerdict
    num_frames: int
    height: int
    width: int
    dd_frames: int
    face_protocol: str
    extra: dict = field(default_factory=dict)  # the opt-in groups' metrics, by name; None: computed, no value
    notes: tuple[str, ...] = ()  # why an opt-in metric has no value (a judge's failed reply, ...)
    clip_i_frames: tuple[float, ...] = ()
    dino_i_frames: tuple[float, ...] = ()
    face_detections: tuple[DetectedFace | None, ...] = ()


@dataclass
class _ReferenceEmbeddings:
    clip: np.ndarray
    dino: np.ndarray
    face: np.ndarray | None = None
    face_done: bool = False
    face_cur: object | None = None  # metrics.backends.curricularface.CurReference, once computed


def _is_video(frames) -> bool:
    return isinstance(frames, np.ndarray) and frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[-1] == 3


def _check(video: VideoToScore, index: int) -> None:
    frames = video.frames
    if not _is_video(frames):
        raise ValueError(f"`videos[{index}].frames` must be uint8 RGB (F, H, W, 3), got {getattr(frames, 'shape', None)}.")
    if frames.shape[0] < 2:
        raise ValueError(f"`videos[{index}].frames` has {frames.shape[0]} frame(s); T.Cons and DD need at least 2.")
    dd_frames = video.dd_frames
    if dd_frames is not None and not (_is_video(dd_frames) and dd_frames.shape[0] >= 1):
        raise ValueError(
            f"`videos[{index}].dd_frames` must be uint8 RGB (F, H, W, 3) with F >= 1, "
            f"got {getattr(dd_frames, 'shape', None)}; pass None to judge DD on `frames`."
        )
    reference = video.reference
    if not (isinstance(reference, np.ndarray) and reference.dtype == np.uint8 and reference.ndim == 3 and reference.shape[-1] == 3):
        raise ValueError(f"`videos[{index}].reference` must be a uint8 RGB (H, W, 3) image, got {getattr(reference, 'shape', None)}.")
    if not isinstance(video.prompt, str) or not video.prompt.strip():
        raise ValueError(f"`videos[{index}].prompt` must be a non-empty string, got {video.prompt!r}.")


def largest_face(backend: FaceEmbedder, image: np.ndarray) -> tuple[DetectedFace, np.ndarray] | tuple[None, None]:
    """The largest face in `image` (the `corrected` protocol's choice) and its embedding, or (None, None)."""
    faces = backend.detect(image)
    if not faces:
        return None, None
    face = max(faces, key=lambda face: face.area)
    return face, backend.embed(image, face)


def largest_face_embedding(backend: FaceEmbedder, image: np.ndarray) -> np.ndarray | None:
    """The embedding of the largest face in `image` (the `corrected` protocol's choice), or None."""
    return largest_face(backend, image)[1]


def paper_reference_image(image: np.ndarray) -> np.ndarray:
    """The reference as the author's Face Sim saw it: stretched to 512x512 with PIL's default (bicubic) filter."""
    from PIL import Image

    if image.shape[:2] == (PAPER_REFERENCE_SIZE, PAPER_REFERENCE_SIZE):
        return image
    resized = Image.fromarray(image).resize((PAPER_REFERENCE_SIZE, PAPER_REFERENCE_SIZE), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)


def protocol_face_embedding(backend: FaceEmbedder, image: np.ndarray, *, protocol: FaceProtocol, reference: bool) -> np.ndarray | None:
    """The embedding Face Sim uses for one image under `protocol`, or None when it has no face.

    Args:
        backend: The face embedder; it takes RGB and converts to its model's order itself.
        image: uint8 RGB (H, W, 3).
        protocol: `paper` or `corrected` (see the module docstring).
        reference: The image is the reference (paper: resized, first face) rather than a frame.
    """
    return protocol_face(backend, image, protocol=protocol, reference=reference)[1]


def protocol_face(
    backend: FaceEmbedder, image: np.ndarray, *, protocol: FaceProtocol, reference: bool
) -> tuple[DetectedFace, np.ndarray] | tuple[None, None]:
    """The face Face Sim uses for one image under `protocol` and its embedding, or (None, None) (arguments:
    `protocol_face_embedding`). A frame's box is in the frame's pixels; the paper reference's in its 512x512 resize."""
    if protocol == "corrected":
        return largest_face(backend, image)
    if protocol != "paper":
        raise ValueError(f"`protocol` must be one of {list(FACE_PROTOCOLS)}, got {protocol!r}.")
    if reference:
        image = paper_reference_image(image)
    # The backend turns RGB into BGR; handing it the channel-reversed image makes the model see the
    # RGB array itself, as the author's scripts passed it.
    swapped = np.ascontiguousarray(image[..., ::-1])
    faces = backend.detect(swapped)
    if not faces:
        return None, None
    face = faces[0] if reference else sorted(faces, key=lambda f: f.area)[-1]
    return face, backend.embed(swapped, face)


def check_groups(groups: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """`groups` as a tuple with `paper` first, or an error naming the unknown ones."""
    unknown = [g for g in groups if g not in METRIC_GROUPS]
    if unknown:
        raise ValueError(f"Unknown metric group(s) {unknown}; choose from {list(METRIC_GROUPS)} (the paper's six are always computed).")
    return ("paper", *dict.fromkeys(g for g in groups if g != "paper"))


def extra_metrics(groups: tuple[str, ...], backends: MetricBackends | None) -> tuple[str, ...]:
    """The opt-in metrics `groups` compute with `backends`: a metric whose backend is not configured is left out."""
    wanted = [m for g in check_groups(groups) if g != "paper" for m in METRIC_GROUPS[g]]
    return tuple(m for m in wanted if m not in GROUP_BACKENDS or (backends is not None and getattr(backends, GROUP_BACKENDS[m], None)))


def _image_key(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes() + str(image.shape).encode()).hexdigest()


class MetricSuite:
    """Scores videos with loaded backends, caching reference and prompt embeddings across calls.

    Example:
        >>> suite = MetricSuite(load_backends(MetricBackendsConfig()))
        >>> scores = suite.score([VideoToScore(frames, "A person wearing sunglasses.", reference)])
    """

    def __init__(
        self, backends: MetricBackends, *, face_protocol: FaceProtocol = "corrected", groups: tuple[str, ...] = ("paper",)
    ) -> None:
        """
        Args:
            backends: The loaded models.
            face_protocol: How Face Sim is computed: `paper` (the author's steps, comparable with
                the published tables) or `corrected` (BGR, largest face); see the module docstring.
            groups: Metric groups (`METRIC_GROUPS`); the paper's six are always computed.
        """
        if face_protocol not in FACE_PROTOCOLS:
            raise ValueError(f"`face_protocol` must be one of {list(FACE_PROTOCOLS)}, got {face_protocol!r}.")
        self.backends = backends
        self.face_protocol = face_protocol
        self.groups = check_groups(groups)
        self.extra_metrics = extra_metrics(self.groups, backends)
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
            face, detections = self._face_similarity(video, reference)
            results.append(
                VideoScores(
                    clip_t=clip_t(clip_emb, self._prompts[video.prompt]),
                    clip_i=clip_i(clip_emb, reference.clip),
                    dino_i=dino_i(dino_emb, reference.dino),
                    t_cons=temporal_consistency(clip_emb),
                    face=face,
                    dynamics=self._dynamics(video.frames if video.dd_frames is None else video.dd_frames),
                    num_frames=count,
                    height=height,
                    width=width,
                    dd_frames=count if video.dd_frames is None else len(video.dd_frames),
                    face_protocol=self.face_protocol,
                    # The cosines CLIP-I and DINO-I average, from the same embeddings.
                    clip_i_frames=tuple(map(float, cosines_to(clip_emb, reference.clip, argument="reference_embedding"))),
                    dino_i_frames=tuple(map(float, cosines_to(dino_emb, reference.dino, argument="reference_embedding"))),
                    face_detections=detections,
                    **self._extra(video, dino_emb, reference),
                )
            )
        return results

    def _extra(self, video: VideoToScore, dino_emb: np.ndarray, reference: _ReferenceEmbeddings) -> dict:
        """The opt-in groups' metrics of one video, from this pass's frames and embeddings."""
        from metrics import video_quality

        if not self.extra_metrics:
            return {}
        values, notes = {}, []
        for metric in self.extra_metrics:
            if metric == "temporal_flickering":
                values[metric] = video_quality.temporal_flickering(video.frames)
            elif metric == "i2v_subject":
                values[metric] = video_quality.i2v_subject(dino_emb, reference.dino)
            elif metric == "motion_amplitude":
                values[metric] = video_quality.opens2v_motion_amplitude(video.frames)
            elif metric == "aes_score":
                values[metric] = self.backends.aesthetic.score_video(video.frames).score
            elif metric == "facesim_cur" and video.score_faces:  # human subjects only, like Face Sim
                if reference.face_cur is None:
                    reference.face_cur = self.backends.face_cur.reference(video.reference)
                cur = self.backends.face_cur.score_video(video.frames, reference.face_cur)
                values |= {"facesim_cur": cur.score, "facesim_cur_opens2v": cur.opens2v_score}
                if cur.reason:
                    notes.append(f"{METRIC_NOTES['facesim_cur']} {cur.reason}")
            elif metric == "natural_score":
                judged = self.backends.natural.score(video.frames, video.prompt)
                values[metric] = judged.value
                if judged.value is None:
                    notes.append(f"{METRIC_NOTES['natural_score']} {judged.error}")
        return {"extra": values, "notes": tuple(notes)}

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

    def _face_similarity(
        self, video: VideoToScore, reference: _ReferenceEmbeddings
    ) -> tuple[FaceSimilarity | None, tuple[DetectedFace | None, ...]]:
        """Face Sim of one video and, per frame, the face its protocol used (None: none found)."""
        face = self.backends.face
        if face is None or not video.score_faces:
            return None, ()
        protocol = self.face_protocol
        if not reference.face_done:
            reference.face = protocol_face_embedding(face, video.reference, protocol=protocol, reference=True)
            reference.face_done = True
        # Frames are searched even when the reference has no face: the detection rate stays true.
        found = [protocol_face(face, frame, protocol=protocol, reference=False) for frame in video.frames]
        return face_similarity([embedding for _, embedding in found], reference.face), tuple(box for box, _ in found)

    def _dynamics(self, frames: np.ndarray) -> DynamicVerdict:
        count, height, width = frames.shape[:3]
        if count < 2:  # a GIF whose frames all merged, read as decoded: no pair moves (the published script's answer)
            return DynamicVerdict(False, (), flow_threshold(height, width), 0, 0)
        flows = self.backends.flow.consecutive_flows(frames)
        return judge_video([pair_score(flow) for flow in flows], height=height, width=width, num_frames=count)
