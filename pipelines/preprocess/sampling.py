"""Seeded clip and reference-candidate sampling: the same sample id and seed give the same frames."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClipPlan:
    clip_index: int
    frame_indices: list[int]
    stride: int
    reference_candidates: list[int]
    reference_away_from_clip: bool
    shot_index: int
    shot_start_frame: int
    shot_end_frame: int  # exclusive


def rng_for(sample_id: str, seed: int) -> np.random.Generator:
    """A generator seeded from the sample id, independent of the order samples are processed in."""
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _candidates(rng, clip: list[int], start: int, end: int, count: int) -> tuple[list[int], bool]:
    """Reference candidates from the clip's own shot [start, end): outside the clip's span when there
    is room, else also between its frames, else anywhere in the shot."""
    in_clip = set(clip)
    outside = [i for i in range(start, end) if i < clip[0] or i > clip[-1]]
    between = [i for i in range(clip[0], clip[-1] + 1) if i not in in_clip]
    for pool, away in ((outside, True), (outside + between, False), (list(range(start, end)), False)):
        if len(pool) >= count:
            return [int(i) for i in rng.choice(pool, size=count, replace=False)], away
    return [int(i) for i in start + rng.permutation(end - start)[:count]], False


def plan_clips(
    sample_id: str,
    shots: list[tuple[int, int]],
    *,
    num_frames: int,
    stride: int,
    candidates: int,
    seed: int,
    max_clips: int = 1,
    span_frames: int | None = None,
) -> list[ClipPlan]:
    """Up to `max_clips` non-overlapping clips, none crossing a shot boundary.

    A clip keeps up to `span_frames` frames at `stride` (at least `num_frames`; default
    `num_frames`): training draws a `num_frames` window from them at every draw. In a shot too
    short for `num_frames` frames at `stride`, the stride falls back to its length // num_frames
    and the clip keeps the frames that fit at that stride. Each shot holds as many back-to-back clips as fit, at a seeded
    offset; the clips are a seeded choice among them, numbered in time order. Returns [] when no
    shot has `num_frames` frames.
    """
    span_frames = max(num_frames, span_frames or num_frames)
    rng = rng_for(sample_id, seed)
    windows = []
    for shot_index, (start, end) in enumerate(shots):
        length = end - start
        if length < num_frames:
            continue
        shot_stride = stride if (num_frames - 1) * stride + 1 <= length else length // num_frames
        kept = min(span_frames, 1 + (length - 1) // shot_stride)  # frames of the clip, at its stride
        span = (kept - 1) * shot_stride + 1
        count = length // span
        offset = int(rng.integers(0, length - count * span + 1))
        windows += [(shot_index, start, end, shot_stride, kept, start + offset + j * span) for j in range(count)]
    if not windows:
        return []
    chosen = sorted(rng.choice(len(windows), size=min(max_clips, len(windows)), replace=False))
    plans = []
    for clip_index, w in enumerate(chosen):
        shot_index, start, end, shot_stride, kept, first = windows[int(w)]
        clip = [first + k * shot_stride for k in range(kept)]
        picked, away = _candidates(rng, clip, start, end, candidates)
        plans.append(ClipPlan(clip_index, clip, shot_stride, picked, away, shot_index, start, end))
    return plans
