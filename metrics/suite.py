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
and the aesthetic score, FaceSim-Cur, GmeScore and NaturalScore when their backends are configured).

The pass is made of units (`SCORE_UNITS`), each computable alone: `score(videos, wanted=...)`
runs only the units asked for and calls a backend only for them, which is what lets
`metrics.score_cache` reuse every unit whose inputs, backend and protocol are unchanged.
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
    "opens2v": ("motion_amplitude", "aes_score", "facesim_cur", "gme_score", "natural_score"),
}
# Metrics of a group that need a backend of their own (`MetricBackendsConfig.<role>`); not computed without it.
GROUP_BACKENDS = {"aes_score": "aesthetic", "facesim_cur": "face_cur", "gme_score": "gme", "natural_score": "natural"}
# How the note of a metric left empty starts in a record's `message` (the grid page picks each metric's own).
METRIC_NOTES = {"facesim_cur": "FaceSim-Cur:", "natural_score": "NaturalScore:"}


@dataclass(frozen=True)
class ScoreUnit:
    """A part of the pass computed alone: the backend roles and inputs its values rest on.

    `version` goes into the score cache's key: bump it when the unit's definition changes, so
    cached values computed by the old one are not reused. `cache_empty`: whether an empty value
    (with its note) is kept; False for a judge whose failure may be transient.
    """

    roles: tuple[str, ...]
    inputs: tuple[str, ...]  # of: frames, dd_frames, reference, face_cur_reference, prompt
    protocol: tuple[str, ...] = ()  # MetricSuite attributes the values depend on
    version: int = 1
    cache_empty: bool = True
    faces_only: bool = False  # computed for human subjects only (VideoToScore.score_faces)
    libraries: tuple[str, ...] = ()  # distributions whose version a weight-free unit's values depend on


SCORE_UNITS = {
    "clip": ScoreUnit(("clip",), ("frames", "reference", "prompt")),  # CLIP-T, CLIP-I, T.Cons
    "dino": ScoreUnit(("dino",), ("frames", "reference")),  # DINO-I
    "face": ScoreUnit(("face",), ("frames", "reference"), protocol=("face_protocol",), faces_only=True),  # Face Sim
    "dd": ScoreUnit(("flow",), ("dd_frames",)),  # DD
    "temporal_flickering": ScoreUnit((), ("frames",), libraries=("numpy",)),
    "i2v_subject": ScoreUnit(("dino",), ("frames", "reference")),
    "motion_amplitude": ScoreUnit((), ("frames",), libraries=("numpy", "opencv-python-headless", "opencv-python")),
    "aes_score": ScoreUnit(("aesthetic",), ("frames",)),
    "facesim_cur": ScoreUnit(("face_cur",), ("frames", "face_cur_reference")),  # who gets it: MetricSuite.units
    "gme_score": ScoreUnit(("gme",), ("frames", "prompt")),
    "natural_score": ScoreUnit(("natural",), ("frames", "prompt"), cache_empty=False),
}
PAPER_UNITS = ("clip", "dino", "face", "dd")

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
        face_cur_reference: uint8 RGB image FaceSim-Cur compares with (OpenS2V picks the person's
            image of a multi-subject entry); None: `reference`.
        score_face_cur: Compute FaceSim-Cur (with its backend); None: as Face Sim (`score_faces`).
            OpenS2V decides by its entry's id, not by the class.
    """

    frames: np.ndarray
    prompt: str
    reference: np.ndarray
    score_faces: bool = True
    dd_frames: np.ndarray | None = None
    face_cur_reference: np.ndarray | None = None
    score_face_cur: bool | None = None


@dataclass(frozen=True)
class VideoScores:
    """The metrics of one video; `face` is None when faces were not scored.

    `units` are the `SCORE_UNITS` this pass computed; the values of the others are None (a pass
    asked for fewer, `MetricSuite.score(..., wanted=...)`). The per-frame evidence comes from the
    same pass: `clip_i_frames` / `dino_i_frames` are the cosines CLIP-I / DINO-I average,
    `face_detections` the face each frame's protocol used (None: no face found; empty when faces
    were not scored), `face.frame_scores` their similarities.
    """

    clip_t: float | None
    clip_i: float | None
    dino_i: float | None
    t_cons: float | None
    face: FaceSimilarity | None
    dynamics: DynamicVerdict | None
    num_frames: int
    height: int
    width: int
    dd_frames: int | None
    face_protocol: str
    units: frozenset[str] = frozenset()
    extra: dict = field(default_factory=dict)  # the opt-in groups' metrics, by name; None: computed, no value
    notes: dict[str, str] = field(default_factory=dict)  # by metric: why an opt-in metric has no value (a judge's failed reply, ...)
    clip_i_frames: tuple[float, ...] = ()
    dino_i_frames: tuple[float, ...] = ()
    face_detections: tuple[DetectedFace | None, ...] = ()


@dataclass
class _ReferenceEmbeddings:
    clip: np.ndarray | None = None
    dino: np.ndarray | None = None
    face: np.ndarray | None = None
    face_done: bool = False


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
    for name in ("reference", "face_cur_reference"):
        image = getattr(video, name)
        if name == "face_cur_reference" and image is None:
            continue
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3):
            raise ValueError(f"`videos[{index}].{name}` must be a uint8 RGB (H, W, 3) image, got {getattr(image, 'shape', None)}.")
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
        self._face_cur_references: dict[str, object] = {}  # metrics.backends.curricularface.CurReference by image key
        self._prompts: dict[str, np.ndarray] = {}

    def units(self, video: VideoToScore) -> frozenset[str]:
        """The `SCORE_UNITS` this suite computes for `video` (faces for human subjects, with a backend)."""
        units = {"clip", "dino", "dd", *self.extra_metrics}
        if self.backends.face is not None:
            units.add("face")
        if not (video.score_faces if video.score_face_cur is None else video.score_face_cur):
            units.discard("facesim_cur")
        return frozenset(u for u in units if video.score_faces or not SCORE_UNITS[u].faces_only)

    def score(self, videos: list[VideoToScore], *, wanted: list[frozenset[str]] | None = None) -> list[VideoScores]:
        """Score `videos` in one pass.

        Args:
            videos: The videos and what each is compared with.
            wanted: Per video, the `SCORE_UNITS` to compute (those it has, `units(video)`); None:
                all of them. A backend is called only for the videos whose units need it.
        """
        for index, video in enumerate(videos):
            _check(video, index)
        if wanted is None:
            wanted = [self.units(video) for video in videos]
        elif len(wanted) != len(videos):
            raise ValueError(f"`wanted` has {len(wanted)} entries for {len(videos)} videos; give one set of units per video.")
        else:
            wanted = [frozenset(w) & self.units(video) for w, video in zip(wanted, videos)]
        needs_clip = [("clip" in w) for w in wanted]
        needs_dino = [bool({"dino", "i2v_subject"} & w) for w in wanted]
        reference_keys = [_image_key(v.reference) for v in videos]
        self._embed_new_references(videos, reference_keys, needs_clip, needs_dino)
        self._embed_new_prompts([v.prompt for v, needed in zip(videos, needs_clip) if needed])
        clip_frames = self._embed_frames(self.backends.clip, videos, needs_clip)
        dino_frames = self._embed_frames(self.backends.dino, videos, needs_dino)

        results = []
        for video, key, units, clip_emb, dino_emb in zip(videos, reference_keys, wanted, clip_frames, dino_frames):
            count, height, width = video.frames.shape[:3]
            reference = self._references[key]
            face, detections = self._face_similarity(video, reference) if "face" in units else (None, ())
            clip = {}
            if clip_emb is not None:
                clip = dict(
                    clip_t=clip_t(clip_emb, self._prompts[video.prompt]),
                    clip_i=clip_i(clip_emb, reference.clip),
                    t_cons=temporal_consistency(clip_emb),
                    # The cosines CLIP-I averages, from the same embeddings (DINO-I's likewise).
                    clip_i_frames=tuple(map(float, cosines_to(clip_emb, reference.clip, argument="reference_embedding"))),
                )
            dino = {}
            if "dino" in units:
                dino = dict(
                    dino_i=dino_i(dino_emb, reference.dino),
                    dino_i_frames=tuple(map(float, cosines_to(dino_emb, reference.dino, argument="reference_embedding"))),
                )
            dd_frames = video.frames if video.dd_frames is None else video.dd_frames
            results.append(
                VideoScores(
                    **(dict(clip_t=None, clip_i=None, t_cons=None) | clip),
                    **(dict(dino_i=None) | dino),
                    face=face,
                    dynamics=self._dynamics(dd_frames) if "dd" in units else None,
                    num_frames=count,
                    height=height,
                    width=width,
                    dd_frames=len(dd_frames) if "dd" in units else None,
                    face_protocol=self.face_protocol,
                    units=units,
                    face_detections=detections,
                    **self._extra(video, dino_emb, reference, units),
                )
            )
        return results

    @staticmethod
    def _embed_frames(backend, videos: list[VideoToScore], needed: list[bool]) -> list[np.ndarray | None]:
        """Per video, its frames' embeddings by `backend` (all videos' frames in one call), None where not needed."""
        frames = [frame for video, want in zip(videos, needed) if want for frame in video.frames]
        embedded = backend.embed_images(frames) if frames else None
        out, start = [], 0
        for video, want in zip(videos, needed):
            if want:
                out.append(embedded[start : start + len(video.frames)])
                start += len(video.frames)
            else:
                out.append(None)
        return out

    def _extra(self, video: VideoToScore, dino_emb: np.ndarray | None, reference: _ReferenceEmbeddings, units: frozenset[str]) -> dict:
        """The opt-in groups' metrics of one video among `units`, from this pass's frames and embeddings."""
        from metrics import video_quality

        values, notes = {}, {}
        for metric in (m for m in self.extra_metrics if m in units):
            if metric == "temporal_flickering":
                values[metric] = video_quality.temporal_flickering(video.frames)
            elif metric == "i2v_subject":
                values[metric] = video_quality.i2v_subject(dino_emb, reference.dino)
            elif metric == "motion_amplitude":
                values[metric] = video_quality.opens2v_motion_amplitude(video.frames)
            elif metric == "aes_score":
                values[metric] = self.backends.aesthetic.score_video(video.frames).score
            elif metric == "facesim_cur":  # the videos `units` gives it: human subjects, or OpenS2V's rule
                image = video.reference if video.face_cur_reference is None else video.face_cur_reference
                key = _image_key(image)
                if key not in self._face_cur_references:
                    self._face_cur_references[key] = self.backends.face_cur.reference(image)
                cur = self.backends.face_cur.score_video(video.frames, self._face_cur_references[key])
                values |= {"facesim_cur": cur.score, "facesim_cur_opens2v": cur.opens2v_score}
                if cur.reason:
                    notes[metric] = f"{METRIC_NOTES['facesim_cur']} {cur.reason}"
            elif metric == "gme_score":
                values[metric] = self.backends.gme.score_video(video.frames, video.prompt).score
            elif metric == "natural_score":
                judged = self.backends.natural.score(video.frames, video.prompt)
                values[metric] = judged.value
                if judged.value is None:
                    notes[metric] = f"{METRIC_NOTES['natural_score']} {judged.error}"
        return {"extra": values, "notes": notes}

    def _embed_new_references(self, videos: list[VideoToScore], keys: list[str], needs_clip: list[bool], needs_dino: list[bool]) -> None:
        for key in keys:
            self._references.setdefault(key, _ReferenceEmbeddings())
        for role, needs in (("clip", needs_clip), ("dino", needs_dino)):
            new = {key: v.reference for key, v, need in zip(keys, videos, needs) if need and getattr(self._references[key], role) is None}
            if new:
                for key, embedding in zip(new, getattr(self.backends, role).embed_images(list(new.values()))):
                    setattr(self._references[key], role, embedding)

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
