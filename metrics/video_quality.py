"""Video-quality and identity metrics of OpenS2V-Eval, VBench and VBench-2.0 that need no weights of their own.

Each is written from its reference evaluation code (docs/metrics_opens2v.md says where each one
differs from what this suite can feed it):
- OpenS2V motion amplitude (`opens2v_motion_amplitude`): Farneback flow of every consecutive pair,
  downscaled to 16 px wide, the signed mean of both flow components, absolute value. OpenS2V-Eval
  v1.0 (its `motion_score`) and v1.1 (its `motion_amplitude`) compute the same per-video value.
- OpenS2V frame sampling (`opens2v_frame_indices`) and the aesthetic score's mean over sampled frames.
- VBench temporal flickering (`temporal_flickering`): 1 - mean absolute consecutive-frame difference / 255.
- VBench motion smoothness (`motion_smoothness`): how well the odd frames are predicted by interpolating
  the even ones, with the interpolator passed in (VBench's is the AMT-S network, not built here).
- VBench-I2V `i2v_subject` (`i2v_subject`): from per-frame DINO embeddings and the reference's.
- VBench-2.0 human identity (`human_identity`): from per-frame face embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from metrics.definitions import _rows, _unit

# OpenS2V's get_motion_amplitude.py (v1.1) and v1.0's get_motionscore.py: cv2.calcOpticalFlowFarneback arguments.
FARNEBACK = {"pyr_scale": 0.5, "levels": 3, "winsize": 15, "iterations": 3, "poly_n": 5, "poly_sigma": 1.2, "flags": 0}
MOTION_DOWNSCALE_WIDTH = 16
OPENS2V_AESTHETIC_FRAMES = 32  # get_aesscore.py's --num_frames default
# VBench-I2V i2v_subject's weights of max(conformity), mean(consecutive), min(consecutive) since July 2024;
# its first release (March 2024) used 0.5, 0.5, 0.0.
I2V_SUBJECT_WEIGHTS = (0.4, 0.3, 0.3)
I2V_SUBJECT_WEIGHTS_MARCH_2024 = (0.5, 0.5, 0.0)
HUMAN_IDENTITY_THRESHOLD = 0.4  # VBench-2.0 human_identity.py: a frame below this cosine to the first is inconsistent
HUMAN_IDENTITY_MIN_FRAMES = 20  # ... and a video with fewer valid frames after the first is left out


def _video(frames, argument: str = "frames", *, minimum: int = 2) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < minimum:
        raise ValueError(f"`{argument}` must be uint8 RGB (F >= {minimum}, H, W, 3), got {frames.dtype} {frames.shape}.")
    return frames


def opens2v_frame_indices(total_frames: int, num_frames: int | None = OPENS2V_AESTHETIC_FRAMES) -> np.ndarray:
    """The frames OpenS2V's scripts read: `num_frames` evenly spaced indices, truncated to integers.

    More indices than frames repeat some frames unevenly: 32 of a 16-frame video read frame 0 three
    times and frame 15 once, so the video's mean weights its frames unequally, as OpenS2V's does.
    None reads every frame once (the motion scripts).
    """
    if total_frames < 1:
        raise ValueError(f"`total_frames` must be >= 1, got {total_frames}.")
    if num_frames is None:
        return np.arange(total_frames)
    if num_frames < 1:
        raise ValueError(f"`num_frames` must be >= 1 or None (every frame), got {num_frames}.")
    return np.linspace(0, total_frames - 1, num_frames).astype(np.int64)  # numpy's dtype=int: truncation


def aesthetic_video_score(frame_scores: ArrayLike, indices: ArrayLike | None = None) -> float:
    """OpenS2V's aesthetic score of a video: the mean of the per-frame LAION scores over the sampled frames.

    Args:
        frame_scores: The predictor's score of each frame of the video (or of each sampled frame).
        indices: The sampled frames (`opens2v_frame_indices`), repeats counted; None: every score once.
    """
    scores = np.asarray(frame_scores, dtype=np.float64)
    if scores.ndim != 1 or scores.size == 0:
        raise ValueError(f"`frame_scores` must be a non-empty 1-D array, got shape {scores.shape}.")
    if indices is not None:
        indices = np.asarray(indices)
        if indices.size == 0 or indices.min() < 0 or indices.max() >= scores.size:
            raise ValueError(f"`indices` must index the {scores.size} frame scores, got {indices.tolist()}.")
        scores = scores[indices]
    if not np.isfinite(scores).all():  # frames not sampled may hold NaN; sampled ones may not
        raise ValueError("`frame_scores` holds NaN or inf at a sampled frame.")
    return float(scores.mean())


def opens2v_gray(frame: np.ndarray) -> np.ndarray:
    """The grey image OpenS2V's motion script computes: BGR-to-grey weights applied to an RGB frame.

    Its frames are RGB (decoded by decord or imageio) but converted with COLOR_BGR2GRAY, so red gets
    blue's weight (0.114) and blue red's (0.299); the flow is computed on that image.
    """
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_BGR2GRAY)


def opens2v_farneback_flows(frames: ArrayLike) -> np.ndarray:
    """uint8 RGB (F, H, W, 3) -> (F - 1, H, W, 2) Farneback flow of each consecutive pair, as OpenS2V computes it."""
    import cv2

    frames = _video(frames)
    gray = [opens2v_gray(frame) for frame in frames]
    return np.stack([cv2.calcOpticalFlowFarneback(a, b, None, **FARNEBACK) for a, b in zip(gray[:-1], gray[1:])])


def opens2v_motion_statistic(flows: ArrayLike) -> float:
    """OpenS2V's motion value of (P, H, W, 2) flows in pixels: each pair's flow resized to 16 px wide
    (area interpolation, height int(H * 16 / W)), averaged over pairs, then the mean of every pixel's u
    and v together, absolute value.

    The components are signed, so opposite motions cancel: a uniform shift (u, v) gives |u + v| / 2,
    a pan right then back left gives 0. This is the value OpenS2V's merge clamps to [0, 1].
    """
    import cv2

    flows = np.asarray(flows, dtype=np.float32)
    if flows.ndim != 4 or flows.shape[-1] != 2 or flows.shape[0] < 1:
        raise ValueError(f"`flows` must be (pairs >= 1, H, W, 2), got shape {flows.shape}.")
    height, width = flows.shape[1:3]
    size = (MOTION_DOWNSCALE_WIDTH, int(height * (MOTION_DOWNSCALE_WIDTH / width)))
    if size[1] < 1:
        raise ValueError(f"Flow of {width}x{height} is too wide: 16 px wide it would have no row (OpenS2V's resize fails too).")
    small = np.stack([cv2.resize(flow, size, interpolation=cv2.INTER_AREA) for flow in flows])
    return float(abs(np.mean(np.mean(small, axis=0, dtype=np.float32), dtype=np.float32)))


def opens2v_motion_amplitude(frames: ArrayLike) -> float:
    """OpenS2V's motion of a video from every frame: `opens2v_motion_statistic(opens2v_farneback_flows(frames))`.

    v1.1 calls it `motion_amplitude` (merge weight 0.02, Human-Domain 0.03), v1.0 `motion_score` (0.12,
    0.15); both scripts store the same `motion_fb` value. Their Lucas-Kanade value (`motion_lk`) is the
    mean of line drawings in unseeded random colours, which no merge reads; it is not computed.
    """
    return opens2v_motion_statistic(opens2v_farneback_flows(frames))


def temporal_flickering(frames: ArrayLike) -> float:
    """VBench's temporal flickering of a video: (255 - mean over consecutive pairs of mean |f_i+1 - f_i|) / 255.

    Every pixel and channel of every frame counts; 1 is a video that does not change at all. VBench
    scores it on videos of static-scene prompts only (the motion itself would count as flicker).
    """
    frames = _video(frames).astype(np.float32)
    pair_means = np.abs(frames[1:] - frames[:-1]).reshape(frames.shape[0] - 1, -1).mean(axis=1)
    return float((255.0 - pair_means.mean()) / 255.0)


Interpolator = Callable[[np.ndarray, np.ndarray], np.ndarray]


def motion_smoothness(frames: ArrayLike, interpolate: Interpolator) -> float:
    """VBench's motion smoothness with a given frame interpolator.

    The even frames (0, 2, 4, ...) are kept; the middle of each consecutive pair of them is
    interpolated; each interpolated frame k is compared with the original frame 2k + 1 by its mean
    absolute difference on uint8 pixels; the score is (255 - mean of those) / 255. A 16-frame video
    has 7 comparisons (frames 1 to 13; frame 15 has no even frame after it).

    Args:
        frames: uint8 RGB (F >= 3, H, W, 3).
        interpolate: (frame_a, frame_b) -> their middle frame, uint8 RGB (H, W, 3). VBench's is AMT-S
            (its interpolated frame truncated to uint8, not rounded); this module does not build it.
    """
    frames = _video(frames, minimum=3)
    evens, odds = frames[0::2], frames[1::2]
    differences = []
    for index, (a, b) in enumerate(zip(evens[:-1], evens[1:])):
        middle = np.asarray(interpolate(a, b))
        if middle.dtype != np.uint8 or middle.shape != a.shape:
            raise ValueError(f"`interpolate` must return a uint8 frame of shape {a.shape}, got {middle.dtype} {middle.shape}.")
        differences.append(np.abs(middle.astype(np.int16) - odds[index].astype(np.int16)).mean())
    return float((255.0 - np.mean(differences)) / 255.0)


def i2v_subject(
    frame_embeddings: ArrayLike, reference_embedding: ArrayLike, *, weights: tuple[float, float, float] = I2V_SUBJECT_WEIGHTS
) -> float:
    """VBench-I2V's `i2v_subject` of one video from DINO embeddings (rows = frames, in order).

    Cosines below 0 count as 0. With c_i = cos(reference, frame_i) over every frame and
    s_i = cos(frame_i-1, frame_i) over consecutive pairs:
    `weights[0] * max(c) + weights[1] * mean(s) + weights[2] * min(s)`.

    VBench-I2V embeds with DINO ViT-B/16 on a 256 px bicubic resize and a 224 px centre crop; fed
    with another model's or preprocessing's embeddings the formula is the same, the value is not
    VBench's.
    """
    frames = _unit(_rows(frame_embeddings, "frame_embeddings"), "frame_embeddings")
    reference = _unit(_rows(np.reshape(reference_embedding, (1, -1)), "reference_embedding"), "reference_embedding")[0]
    if frames.shape[0] < 2:
        raise ValueError(f"`frame_embeddings` needs at least 2 frames for i2v_subject, got {frames.shape[0]}.")
    if reference.shape[0] != frames.shape[1]:
        raise ValueError(f"`reference_embedding` has dimension {reference.shape[0]} but the frame embeddings have {frames.shape[1]}.")
    if len(weights) != 3:
        raise ValueError(f"`weights` must be 3 numbers (max conformity, mean and min consecutive), got {weights!r}.")
    conformity = np.maximum(frames @ reference, 0.0)
    consecutive = np.maximum(np.einsum("nd,nd->n", frames[:-1], frames[1:]), 0.0)
    w_max, w_mean, w_min = weights
    return float(w_max * conformity.max() + w_mean * consecutive.mean() + w_min * consecutive.min())


HumanIdentityStatus = Literal["scored", "first_frame_not_one_face", "too_few_frames"]


@dataclass(frozen=True)
class HumanIdentity:
    """VBench-2.0 human identity of one video with what it rests on.

    `score` (consistent / valid frames) is None unless `status == "scored"`; VBench-2.0 leaves such a
    video out of its mean (its -1).
    """

    score: float | None
    status: HumanIdentityStatus
    consistent_frames: int
    valid_frames: int
    frames: int


def _faces_of(entry, index: int) -> np.ndarray:
    if entry is None:
        return np.zeros((0, 0))
    faces = np.asarray(entry, dtype=np.float64)
    if faces.size == 0:
        return np.zeros((0, 0))
    if faces.ndim == 1:
        faces = faces[None]
    if faces.ndim != 2:
        raise ValueError(f"`frame_faces[{index}]` must be None, one (D,) embedding or (K, D) embeddings, got shape {faces.shape}.")
    return faces


def human_identity(
    frame_faces: Sequence[ArrayLike | None],
    *,
    threshold: float = HUMAN_IDENTITY_THRESHOLD,
    min_frames: int = HUMAN_IDENTITY_MIN_FRAMES,
    faceless_frames: Literal["consistent", "skipped"] = "consistent",
) -> HumanIdentity:
    """VBench-2.0's human identity of one video: the share of later frames whose face stays the first frame's.

    The first frame must hold exactly one face: its embedding is the anchor (else the video is left
    out). A later frame with exactly one face is valid, and consistent when cos(face, anchor) >= `threshold`;
    one with several faces is skipped. A video with fewer than `min_frames` valid frames after the
    first is left out, so under VBench-2.0's 20 a 16-frame video never scores.

    Args:
        frame_faces: Per frame in order, every face's embedding: None or an empty array (no face), a
            (D,) embedding (one face) or (K, D) embeddings (K faces; only K matters when K != 1).
        threshold: The cosine a consistent frame reaches (VBench-2.0: 0.4 with its own face model).
        min_frames: Valid frames after the first that a scored video needs (VBench-2.0: 20).
        faceless_frames: A later frame without any face: "consistent" counts it valid and consistent,
            as VBench-2.0 does (its detector reports no face as one entry with an empty box, which its
            check lets through); "skipped" leaves it out like a frame with several faces.
    """
    if faceless_frames not in ("consistent", "skipped"):
        raise ValueError(f"`faceless_frames` must be 'consistent' or 'skipped', got {faceless_frames!r}.")
    if min_frames < 1:
        raise ValueError(f"`min_frames` must be >= 1, got {min_frames}.")
    if len(frame_faces) == 0:
        raise ValueError("`frame_faces` is empty; pass one entry (None or embeddings) per frame.")
    faces = [_faces_of(entry, index) for index, entry in enumerate(frame_faces)]
    if faces[0].shape[0] != 1:
        return HumanIdentity(None, "first_frame_not_one_face", 0, 0, len(faces))
    anchor = _unit(_rows(faces[0], "frame_faces[0]"), "frame_faces[0]")[0]
    consistent = valid = 0
    for index, found in enumerate(faces[1:], start=1):
        if found.shape[0] == 0:
            if faceless_frames == "consistent":
                consistent, valid = consistent + 1, valid + 1
            continue
        if found.shape[0] > 1:
            continue
        face = _unit(_rows(found, f"frame_faces[{index}]"), f"frame_faces[{index}]")[0]
        if face.shape != anchor.shape:
            raise ValueError(f"`frame_faces[{index}]` has dimension {face.shape[0]} but the first frame's face has {anchor.shape[0]}.")
        valid += 1
        consistent += bool(face @ anchor >= threshold)
    if valid < min_frames:
        return HumanIdentity(None, "too_few_frames", consistent, valid, len(faces))
    return HumanIdentity(consistent / valid, "scored", consistent, valid, len(faces))


def human_identity_mean(videos: Sequence[HumanIdentity]) -> float | None:
    """VBench-2.0's dimension score: the mean of the scored videos' ratios (None when none scored)."""
    scores = [video.score for video in videos if video.score is not None]
    return float(np.mean(scores)) if scores else None
