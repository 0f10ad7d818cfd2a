"""Dynamic degree (VBench) from optical flow, exactly as docs/method.md, section 7 defines it.

A consecutive frame pair scores the mean of its top 5 % flow magnitudes; a video is dynamic when
enough pairs exceed a threshold that scales with the frame size; DD is the share of dynamic
videos, pooled over a whole set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

TOP_FRACTION = 0.05


def flow_threshold(height: int, width: int) -> float:
    """Pixels of motion a pair must exceed: 6 at 256 px, 12 at 512 px (6 * min(H, W) / 256)."""
    if height < 1 or width < 1:
        raise ValueError(f"Frame size must be positive, got height={height}, width={width}.")
    return 6.0 * min(height, width) / 256.0


def required_pairs(num_frames: int) -> int:
    """Pairs above the threshold that make a video dynamic: round(4 * n_frames / 16), 4 at 16 frames."""
    if num_frames < 2:
        raise ValueError(f"`num_frames` must be >= 2 to have a frame pair, got {num_frames}.")
    return round(4 * num_frames / 16)


def pair_score(flow: np.ndarray) -> float:
    """Mean of the top 5 % flow magnitudes of one pair; `flow` is (H, W, 2) in pixels (u, v)."""
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"`flow` must be (H, W, 2), got shape {flow.shape}.")
    magnitude = np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2).ravel()
    cut = max(int(magnitude.size * TOP_FRACTION), 1)
    return float(np.partition(magnitude, magnitude.size - cut)[-cut:].mean())


@dataclass(frozen=True)
class DynamicVerdict:
    """Whether one video is dynamic, with the pair scores and thresholds that decided it."""

    dynamic: bool
    pair_scores: tuple[float, ...]
    threshold: float
    pairs_above: int
    pairs_required: int


def judge_video(pair_scores: Sequence[float], *, height: int, width: int, num_frames: int) -> DynamicVerdict:
    """Apply the threshold and the pair count to the pair scores of one video."""
    if len(pair_scores) != num_frames - 1:
        raise ValueError(f"`pair_scores` must hold num_frames - 1 = {num_frames - 1} consecutive pairs, got {len(pair_scores)}.")
    threshold = flow_threshold(height, width)
    needed = required_pairs(num_frames)
    above = sum(score > threshold for score in pair_scores)
    return DynamicVerdict(above >= needed, tuple(float(s) for s in pair_scores), threshold, above, needed)


def dynamic_degree(verdicts: Sequence[bool]) -> float:
    """DD: the share of dynamic videos, pooled over every video of a set."""
    if len(verdicts) == 0:
        raise ValueError("`verdicts` is empty; DD needs at least one video.")
    return float(np.mean([bool(v) for v in verdicts]))
