"""Per-video score records: what was scored, every metric, what it rested on, or why it failed.

A record is a flat dict following `RECORD_SCHEMA`; errors are records too (status "error" with a
code and message) so one bad video never stops the others.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from metrics.io import GIF_FRAMES, GifFrames, MediaError, read_frames, read_image
from metrics.suite import METRIC_NOTES, SCORE_UNITS, MetricSuite, VideoScores, VideoToScore
from videomaker.subjects import is_human

if TYPE_CHECKING:
    from metrics.score_cache import ScoreCache

logger = logging.getLogger(__name__)


ERROR_CODES = (
    "video_missing",
    "video_unreadable",
    "reference_missing",
    "reference_unreadable",
    "frame_count_mismatch",
    "scoring_failed",
)

RECORD_SCHEMA = pa.schema(
    [
        ("video", pa.string()),  # the file CLIP-T, CLIP-I, DINO-I, T.Cons and Face Sim read
        ("subject_id", pa.string()),
        ("prompt", pa.string()),
        ("reference", pa.string()),
        ("set", pa.string()),
        ("subject_class", pa.string()),
        ("method", pa.string()),
        ("seed", pa.int64()),
        ("status", pa.string()),  # "ok" or "error"
        ("error", pa.string()),  # one of ERROR_CODES
        ("message", pa.string()),
        ("frames", pa.int32()),  # frames the embedding metrics scored (a GIF's merged frames expanded)
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("clip_t", pa.float64()),
        ("clip_i", pa.float64()),
        ("dino_i", pa.float64()),
        ("t_cons", pa.float64()),
        ("face_sim", pa.float64()),  # null unless face_status == "scored"
        ("face_status", pa.string()),  # scored, no_face_in_video, reference_has_no_face, not_scored
        ("face_protocol", pa.string()),  # paper (the author's steps) or corrected
        ("face_frames", pa.int32()),  # frames with a detected face
        ("face_detection_rate", pa.float64()),
        ("dd_dynamic", pa.bool_()),
        ("dd_pairs_above", pa.int32()),
        ("dd_pairs_required", pa.int32()),
        ("dd_threshold", pa.float64()),
        ("dd_pair_scores", pa.list_(pa.float64())),
        ("face_cur_reference", pa.string()),  # the image FaceSim-Cur compared with; null: `reference`; "none": not scored
        ("dd_video", pa.string()),  # the file DD read (the GIF, as published, unless configured otherwise)
        ("dd_frames", pa.int32()),  # frames DD judged
        ("dd_file_frames", pa.int32()),  # frames that file holds (fewer for a GIF whose identical frames merged)
        ("dd_gif_frames", pa.string()),  # how a GIF was read for DD: expand or decoded
        ("backends", pa.string()),  # JSON: name, version, weights, digest per role
        # The opt-in metric groups (metrics.suite.METRIC_GROUPS); null when their group was not asked for.
        ("metric_groups", pa.string()),  # the groups scored, comma-separated ("paper" alone by default)
        ("cached_units", pa.string()),  # units (metrics.suite.SCORE_UNITS) whose values came from the score cache, comma-separated
        ("temporal_flickering", pa.float64()),  # vbench
        ("i2v_subject", pa.float64()),  # vbench
        ("motion_amplitude", pa.float64()),  # opens2v
        ("aes_score", pa.float64()),  # opens2v, with backends.aesthetic
        ("facesim_cur", pa.float64()),  # opens2v, with backends.face_cur: null without a face (the reason in `message`)
        ("facesim_cur_opens2v", pa.float64()),  # the value OpenS2V's script writes (0.0 for a video without a face)
        ("gme_score", pa.float64()),  # opens2v, with backends.gme: GME's prompt-frame similarity over 32 sampled frames
        ("natural_score", pa.float64()),  # opens2v, with backends.natural; null with the judge's failure in `message`
        # Per-frame evidence, one entry per scored frame in frame order (DD's per pair: dd_pair_scores).
        ("frame_clip_i", pa.list_(pa.float64())),  # the cosines clip_i averages
        ("frame_dino_i", pa.list_(pa.float64())),  # the cosines dino_i averages
        # Face columns: null when faces were not scored; the face the record's face_protocol used.
        ("frame_face_found", pa.list_(pa.bool_())),
        ("frame_face_box", pa.list_(pa.list_(pa.float64()))),  # x1, y1, x2, y2 in frame pixels; null without a face
        ("frame_face_det_score", pa.list_(pa.float64())),  # the detector's score of that face; null without a face
        ("frame_face_sim", pa.list_(pa.float64())),  # the cosines face_sim averages; null without a face or reference face
    ]
)


NO_FACE_CUR = "none"  # ScoreRequest.face_cur_reference: FaceSim-Cur not scored (as written in manifests and records)


@dataclass
class ScoreRequest:
    """One video to score, as a manifest row names it.

    Args:
        video: Path of the video file whose frames the embedding metrics (CLIP-T, CLIP-I, DINO-I,
            T.Cons, Face Sim) score: the lossless .mkv, mp4 or GIF.
        subject_id: Identity or object the video shows; metrics average per subject first.
        prompt: The generation prompt.
        reference: Path of the reference image.
        set: Benchmark set (celebrity, non_celebrity, object, or any name).
        subject_class: "person" (Face Sim is scored) or an object class (it is not).
        method: Which method made the video (ours, a baseline, an imported one).
        seed: Generation seed, when known.
        dd_video: The file DD reads (the saved GIF, as the published DD); None: `video`.
        face_cur_reference: The image FaceSim-Cur compares with; None: `reference`, for human
            subjects like Face Sim; `NO_FACE_CUR` ("none"): FaceSim-Cur is not scored for this
            video. OpenS2V-Eval's manifests set it by that benchmark's rule (pipelines/evaluation/opens2v.py).
    """

    video: str
    subject_id: str
    prompt: str
    reference: str
    set: str = "custom"
    subject_class: str = "person"
    method: str = ""
    seed: int | None = None
    dd_video: str | None = None
    face_cur_reference: str | None = None

    @property
    def is_human(self) -> bool:
        return is_human(self.subject_class)


def _empty_record(request: ScoreRequest, context: dict) -> dict:
    record = dict.fromkeys(RECORD_SCHEMA.names)
    record.update(asdict(request))
    record["dd_video"] = request.dd_video or request.video
    record.update(context)
    return record


def _error_record(request: ScoreRequest, context: dict, code: str, message: str) -> dict:
    record = _empty_record(request, context)
    record.update(status="error", error=code, message=message)
    return record


# The record columns each unit of the pass fills (metrics.suite.SCORE_UNITS); the score cache keeps them per unit.
UNIT_COLUMNS = {
    "clip": ("clip_t", "clip_i", "t_cons", "frame_clip_i"),
    "dino": ("dino_i", "frame_dino_i"),
    "face": (
        "face_sim",
        "face_status",
        "face_frames",
        "face_detection_rate",
        "frame_face_found",
        "frame_face_box",
        "frame_face_det_score",
        "frame_face_sim",
    ),
    "dd": ("dd_dynamic", "dd_pairs_above", "dd_pairs_required", "dd_threshold", "dd_pair_scores", "dd_frames"),
    "temporal_flickering": ("temporal_flickering",),
    "i2v_subject": ("i2v_subject",),
    "motion_amplitude": ("motion_amplitude",),
    "aes_score": ("aes_score",),
    "facesim_cur": ("facesim_cur", "facesim_cur_opens2v"),
    "gme_score": ("gme_score",),
    "natural_score": ("natural_score",),
}


def unit_values(scores: VideoScores) -> dict[str, dict]:
    """Per unit `scores` computed, the record columns it fills and `note` (why a value is empty, or None)."""
    out = {}
    for unit in scores.units:
        if unit == "clip":
            values = dict(clip_t=scores.clip_t, clip_i=scores.clip_i, t_cons=scores.t_cons, frame_clip_i=list(scores.clip_i_frames))
        elif unit == "dino":
            values = dict(dino_i=scores.dino_i, frame_dino_i=list(scores.dino_i_frames))
        elif unit == "face":
            face, found = scores.face, scores.face_detections
            values = dict(
                face_sim=face.score,
                face_status=face.status,
                face_frames=face.frames_with_face,
                face_detection_rate=face.detection_rate,
                frame_face_found=[f is not None for f in found],
                frame_face_box=[None if f is None else [f.x0, f.y0, f.x1, f.y1] for f in found],
                frame_face_det_score=[None if f is None else f.score for f in found],
                frame_face_sim=list(face.frame_scores),
            )
        elif unit == "dd":
            dynamics = scores.dynamics
            values = dict(
                dd_dynamic=dynamics.dynamic,
                dd_pairs_above=dynamics.pairs_above,
                dd_pairs_required=dynamics.pairs_required,
                dd_threshold=dynamics.threshold,
                dd_pair_scores=list(dynamics.pair_scores),
                dd_frames=scores.dd_frames,
            )
        else:
            values = {column: scores.extra.get(column) for column in UNIT_COLUMNS[unit]}
        out[unit] = values | {"note": scores.notes.get(unit)}
    return out


def _score_record(
    request: ScoreRequest, context: dict, scores: VideoScores, dd_file_frames: int, cached: dict[str, dict] | None = None
) -> dict:
    """The record of a scored video: the units this pass computed and those `cached` (unit -> `unit_values`)."""
    record = _empty_record(request, context)
    record.update(status="ok", frames=scores.num_frames, height=scores.height, width=scores.width, dd_file_frames=dd_file_frames)
    units = dict(cached or {}) | unit_values(scores)
    notes = []
    for unit in SCORE_UNITS:  # one order, whichever pass computed a unit
        if unit in units:
            values = dict(units[unit])
            note = values.pop("note", None)
            record.update(values)
            if note:
                notes.append(note)
    record["face_status"] = record["face_status"] or "not_scored"
    record["cached_units"] = ",".join(u for u in SCORE_UNITS if u in (cached or {}))
    if record["face_status"] == "reference_has_no_face":
        notes.append(f"Reference image {request.reference!r} has no detectable face; Face Sim not scored.")
    record["message"] = "; ".join(notes) or None
    return record


def _mismatch(path: str, count: int, expected: int) -> MediaError:
    return MediaError(
        "frame_count_mismatch",
        f"Video {path!r} has {count} frames, expected {expected}; score it with expected_frames={count} (or None) if that is intended.",
    )


def score_requests(
    suite: MetricSuite,
    requests: list[ScoreRequest],
    *,
    expected_frames: int | None = 16,
    dd_gif_frames: GifFrames = "expand",
    cache: ScoreCache | None = None,
) -> list[dict]:
    """Read, check and score `requests` in one batch; a failure becomes that video's error record.

    A GIF's identical consecutive frames, which its writer merged, are expanded back by duration
    for the embedding metrics, so such a video is never dropped for having too few frames.

    Args:
        expected_frames: Frames every video must have (16 for the benchmarks); None accepts any.
        dd_gif_frames: How DD reads a GIF: `expand` (merged frames given back, `expected_frames`
            frames) or `decoded` (the frames Pillow decodes, as the published DD script iterated;
            its pair count rule then follows that number, and fewer frames are accepted).
        cache: Units whose (inputs, backend, protocol) it holds are taken from it, not computed;
            what this call computes is added to it (`metrics.score_cache`). None computes all.
    """
    if dd_gif_frames not in GIF_FRAMES:
        raise ValueError(f"`dd_gif_frames` must be one of {list(GIF_FRAMES)}, got {dd_gif_frames!r}.")
    context = {
        "backends": json.dumps(suite.backends.describe(), sort_keys=True),
        "face_protocol": suite.face_protocol,
        "dd_gif_frames": dd_gif_frames,
        "metric_groups": ",".join(suite.groups),
    }
    records: list[dict | None] = [None] * len(requests)
    ready: list[tuple[int, VideoToScore, int]] = []
    notes: dict[int, str] = {}  # a video's FaceSim-Cur reference that could not be read
    for index, request in enumerate(requests):
        try:
            video = read_frames(request.video, expected_frames=expected_frames)
            if expected_frames is not None and len(video.frames) != expected_frames:
                raise _mismatch(request.video, len(video.frames), expected_frames)
            dd_path = request.dd_video or request.video
            if dd_path == request.video and not (video.gif and dd_gif_frames == "decoded"):
                dd = video
            else:
                dd = read_frames(dd_path, expected_frames=expected_frames, gif_frames=dd_gif_frames)
                fewer_allowed = dd.gif and dd_gif_frames == "decoded"
                if expected_frames is not None and (
                    len(dd.frames) > expected_frames or (len(dd.frames) < expected_frames and not fewer_allowed)
                ):
                    raise _mismatch(dd_path, len(dd.frames), expected_frames)
            reference = read_image(request.reference)
        except MediaError as error:
            records[index] = _error_record(request, context, error.code, str(error))
            continue
        dd_frames = None if dd is video else dd.frames
        face_cur, face_cur_image = request.face_cur_reference, None
        if "facesim_cur" in suite.extra_metrics and face_cur not in (None, NO_FACE_CUR):  # read only when scored
            try:
                face_cur_image = read_image(face_cur, label="FaceSim-Cur reference image")
            except MediaError as error:  # only FaceSim-Cur is lost, with its reason; the other metrics still count
                face_cur, notes[index] = NO_FACE_CUR, f"{METRIC_NOTES['facesim_cur']} {error}"
        to_score = VideoToScore(
            video.frames,
            request.prompt,
            reference,
            score_faces=request.is_human,
            dd_frames=dd_frames,
            face_cur_reference=face_cur_image,
            score_face_cur=None if face_cur is None else face_cur != NO_FACE_CUR,
        )
        ready.append((index, to_score, dd.decoded))

    keys = [cache.keys(suite, video) if cache is not None else {} for _, video, _ in ready]
    hits = [cache.lookup(unit_keys) if cache is not None else {} for unit_keys in keys]
    wanted = [suite.units(video) - hit.keys() for (_, video, _), hit in zip(ready, hits)]
    try:
        scored = suite.score([video for _, video, _ in ready], wanted=wanted)
    except Exception:  # one video broke a backend: score one by one so the rest still count
        logger.warning("Scoring a batch of %d videos failed; retrying them one by one.", len(ready), exc_info=True)
        scored = []
        for (_index, video, _), units in zip(ready, wanted):
            try:
                scored.extend(suite.score([video], wanted=[units]))
            except Exception as error:
                scored.append(error)
    for (index, _, dd_file_frames), result, unit_keys, hit in zip(ready, scored, keys, hits):
        request = requests[index]
        if isinstance(result, Exception):
            message = f"Scoring {request.video!r} failed: {type(result).__name__}: {result}"
            records[index] = _error_record(request, context, "scoring_failed", message)
            continue
        records[index] = _score_record(request, context, result, dd_file_frames, cached=hit)
        if index in notes:
            records[index]["message"] = "; ".join(filter(None, (records[index]["message"], notes[index])))
        if cache is not None:
            for unit, values in unit_values(result).items():
                if SCORE_UNITS[unit].cache_empty or any(values[c] is not None for c in UNIT_COLUMNS[unit]):
                    cache.add(unit_keys[unit], unit, values)
    return records


def records_table(records: list[dict]) -> pa.Table:
    """The records as a table with exactly `RECORD_SCHEMA`."""
    return pa.Table.from_pylist(records, schema=RECORD_SCHEMA)


def records_for_csv(table: pa.Table) -> pa.Table:
    """The same table with list columns (DD's pair scores, the per-frame evidence) as JSON text, which CSV can hold."""
    for index, column in enumerate(table.schema):
        if pa.types.is_list(column.type):
            text = [json.dumps(v) if v is not None else None for v in table.column(index).to_pylist()]
            table = table.set_column(index, column.name, pa.array(text, pa.string()))
    return table
