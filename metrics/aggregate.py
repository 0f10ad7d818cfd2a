"""Set-level numbers from per-video records, as docs/method.md, section 7 aggregates them.

CLIP-T, CLIP-I, DINO-I, T.Cons and Face Sim: mean over each subject's videos (prompts x seeds),
then mean over subjects, so a subject with more videos does not weigh more. DD pools every video
of the set. Videos without any face are left out of Face Sim and counted; a subject none of whose
videos has a face is left out of the Face Sim mean (as the published evaluation dropped it).
Each group also says which Face Sim protocol its scores used.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from metrics.suite import METRIC_GROUPS

PER_SUBJECT_METRICS = ("clip_t", "face_sim", "clip_i", "dino_i", "t_cons")
# The opt-in groups' metrics, averaged like the first five; in a set's row only when some video has
# the value, so the paper's rows keep exactly their six.
EXTRA_METRICS = tuple(metric for group, metrics in METRIC_GROUPS.items() if group != "paper" for metric in metrics)
METRIC_LABELS = {
    "clip_t": "CLIP-T",
    "face_sim": "Face Sim",
    "clip_i": "CLIP-I",
    "dino_i": "DINO-I",
    "t_cons": "T.Cons",
    "dd": "DD",
}


def _subject_mean(records: list[dict], metric: str) -> tuple[float | None, int]:
    """Mean over subjects of the per-subject mean; also how many subjects had a value."""
    by_subject: dict[str, list[float]] = defaultdict(list)
    for record in records:
        if record[metric] is not None:
            by_subject[record["subject_id"]].append(record[metric])
    if not by_subject:
        return None, 0
    return float(np.mean([np.mean(values) for values in by_subject.values()])), len(by_subject)


def aggregate_set(records: list[dict]) -> dict:
    """The metrics of one set (or any group) of records, with the counts behind them."""
    ok = [r for r in records if r["status"] == "ok"]
    result: dict = {
        "videos": len(ok),
        "errors": len(records) - len(ok),
        "subjects": len({r["subject_id"] for r in ok}),
    }
    for metric in PER_SUBJECT_METRICS:
        result[metric], _ = _subject_mean(ok, metric)
    result["dd"] = float(np.mean([r["dd_dynamic"] for r in ok])) if ok else None
    for metric in EXTRA_METRICS:
        if any(r.get(metric) is not None for r in ok):
            result[metric], _ = _subject_mean(ok, metric)

    faced = [r for r in ok if r["face_status"] not in (None, "not_scored")]
    frames = sum(r["frames"] for r in faced)
    result.update(
        face_sim_videos=sum(r["face_status"] == "scored" for r in faced),
        face_sim_subjects=_subject_mean(ok, "face_sim")[1],
        videos_without_face=sum(r["face_status"] == "no_face_in_video" for r in faced),
        references_without_face=len({r["reference"] for r in faced if r["face_status"] == "reference_has_no_face"}),
        face_detection_rate=(sum(r["face_frames"] for r in faced) / frames) if frames else None,
        # Records from before protocols existed carry none; "+" joins them if a group mixes protocols.
        face_protocol="+".join(sorted({r.get("face_protocol") or "unrecorded" for r in faced})) or None,
    )
    return result


def aggregate(records: list[dict], by: tuple[str, ...] = ("method", "set")) -> list[dict]:
    """`aggregate_set` per group of records sharing the `by` columns, groups in sorted order."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in records:
        groups[tuple(record[key] for key in by)].append(record)
    return [{**dict(zip(by, key)), **aggregate_set(groups[key])} for key in sorted(groups, key=lambda k: tuple(map(str, k)))]
