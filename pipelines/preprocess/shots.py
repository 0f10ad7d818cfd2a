"""Shot boundaries by the content detector: a cut where consecutive frames differ a lot in HSV.

This is the scoring of PySceneDetect's `ContentDetector` (default weights): the mean absolute
difference of hue, saturation and value between a frame and the one before, averaged over the three
channels, on a copy at most 192 px wide; a cut starts a new shot at a frame whose score
reaches `threshold` (27 on the 0-255 scale, PySceneDetect's default), and shots are at least
`min_shot_frames` long. Why this one: it needs no weights, costs one pass of small frames through
FFmpeg's decoder, and hard cuts (the kind that put a reference frame in another scene) are what it
finds reliably. Gradual transitions (fades, dissolves) need a learned detector such as TransNetV2.
"""

from __future__ import annotations

import av
import cv2
import numpy as np

from pipelines.preprocess.video import Rejected, _open

# Frames are scored at this width: cuts change most pixels, so fine detail adds nothing.
SCORE_WIDTH = 128


def content_score(previous_hsv: np.ndarray, hsv: np.ndarray) -> float:
    """Mean over H, S and V of the mean absolute difference (int16 arithmetic, 0-255 scale)."""
    return float(np.mean(cv2.mean(cv2.absdiff(hsv, previous_hsv))[:3]))


def cuts_from_scores(scores: list[float], *, threshold: float, min_shot_frames: int) -> list[int]:
    """Frame numbers that start a new shot; `scores[i]` compares frame i with frame i - 1 (scores[0] is 0)."""
    cuts, last = [], 0
    for frame, score in enumerate(scores):
        if frame and score >= threshold and frame - last >= min_shot_frames:
            cuts.append(frame)
            last = frame
    return cuts


def shots_from_cuts(cuts: list[int], num_frames: int) -> list[tuple[int, int]]:
    """[start, end) frame spans of the shots a list of cuts makes of a `num_frames`-frame video."""
    bounds = [0, *cuts, num_frames]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def detect_cuts(data: bytes, uri: str, *, threshold: float, min_shot_frames: int, threads: int = 0) -> tuple[list[int], int]:
    """(cuts, decoded frame count) of the video in `data`; a broken stream is a decode_error."""
    scores, previous = [], None
    try:
        with _open(data, uri) as container:
            stream = container.streams.video[0]
            stream.codec_context.thread_count = threads
            for frame in container.decode(stream):
                rgb = frame.to_ndarray(format="rgb24")
                if frame.width > 1.5 * SCORE_WIDTH:
                    height = max(1, round(frame.height * SCORE_WIDTH / frame.width))
                    rgb = cv2.resize(rgb, (SCORE_WIDTH, height), interpolation=cv2.INTER_AREA)
                hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
                scores.append(0.0 if previous is None else content_score(previous, hsv))
                previous = hsv
    except av.error.FFmpegError as err:
        raise Rejected("decode_error", f"{uri}: decoding for shot detection failed after {len(scores)} frames ({err}).") from err
    return cuts_from_scores(scores, threshold=threshold, min_shot_frames=min_shot_frames), len(scores)
