"""Seeded clip and reference-candidate sampling: the same sample id and seed give the same frames."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClipPlan:
    frame_indices: list[int]
    stride: int
    reference_candidates: list[int]
    reference_away_from_clip: bool


def rng_for(sample_id: str, seed: int) -> np.random.Generator:
    """A generator seeded from the sample id, independent of the order samples are processed in."""
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def plan_clip(sample_id: str, num_source_frames: int, *, num_frames: int, stride: int, candidates: int, seed: int) -> ClipPlan:
    """Pick the clip's frames and the reference candidates (SPEC sections 4-5).

    The clip takes `num_frames` frames at `stride` from a random start; if the video is too short,
    the stride falls back to n_frames // num_frames. Reference candidates come from outside the
    clip's span when there is room, else from frames between the clip's frames, else from the clip.
    """
    if num_source_frames < num_frames:
        raise ValueError(f"`num_source_frames`={num_source_frames} is fewer than `num_frames`={num_frames}.")
    rng = rng_for(sample_id, seed)
    if (num_frames - 1) * stride + 1 > num_source_frames:
        stride = num_source_frames // num_frames
    span = (num_frames - 1) * stride + 1
    start = int(rng.integers(0, num_source_frames - span + 1))
    clip = [start + k * stride for k in range(num_frames)]

    outside = [i for i in range(num_source_frames) if i < clip[0] or i > clip[-1]]
    between = [i for i in range(clip[0], clip[-1] + 1) if i not in set(clip)]
    for pool, away in ((outside, True), (outside + between, False), (list(range(num_source_frames)), False)):
        if len(pool) >= candidates:
            picked = rng.choice(pool, size=candidates, replace=False)
            return ClipPlan(clip, stride, [int(i) for i in picked], away)
    picked = rng.permutation(num_source_frames)[:candidates]
    return ClipPlan(clip, stride, [int(i) for i in picked], False)
