"""The scoring manifest: which video shows which subject, from which prompt and reference.

Videos from any method score the same way, so results of ID-Animator, PhotoMaker or VideoBooth
enter through a manifest of their files exactly like ours.
"""

from __future__ import annotations

from pathlib import Path

from metrics.records import NO_FACE_CUR, ScoreRequest
from pipelines.manifests import read_manifest
from videomaker import storage

REQUIRED_COLUMNS = ("video", "subject_id", "prompt", "reference")
OPTIONAL_COLUMNS = ("set", "subject_class", "method", "seed", "dd_video", "face_cur_reference")


def _resolve(value: str, base: str) -> str:
    """A path or URI of the manifest as it is; a relative one under `base` (a folder path or URI)."""
    if storage.is_uri(value):
        return value
    path = Path(value).expanduser()
    return str(path) if path.is_absolute() else storage.join(base, value)


def read_score_manifest(manifest: str | Path, videos_dir: str | Path | None = None) -> list[ScoreRequest]:
    """Every row as a `ScoreRequest`; refuses missing columns and empty required fields, listing each row.

    Relative `video` and `dd_video` paths are resolved against `videos_dir` (default: the manifest's folder) and
    relative `reference` paths against the manifest's folder. Files that are missing or broken are
    not refused here: they become error records so the rest still scores.
    """
    path = str(manifest) if storage.is_uri(manifest) else str(Path(manifest).expanduser())
    rows = read_manifest(path, required=REQUIRED_COLUMNS, where="`manifest`")
    base = storage.parent(path)
    video_base = (str(videos_dir) if storage.is_uri(videos_dir) else str(Path(videos_dir).expanduser())) if videos_dir is not None else base
    requests = []
    for row in rows:
        seed = row.get("seed")
        dd_video = row.get("dd_video")
        face_cur = row.get("face_cur_reference")
        # `none`: FaceSim-Cur not scored (a manifest's empty cell reads as null); a path resolves like `reference`
        if face_cur is not None:
            face_cur = NO_FACE_CUR if str(face_cur).lower() == NO_FACE_CUR else _resolve(str(face_cur), base)
        requests.append(
            ScoreRequest(
                video=_resolve(str(row["video"]), video_base),
                subject_id=str(row["subject_id"]),
                prompt=str(row["prompt"]),
                reference=_resolve(str(row["reference"]), base),
                set=str(row.get("set") or "custom"),
                subject_class=str(row.get("subject_class") or "person"),
                method=str(row.get("method") or ""),
                seed=int(seed) if seed is not None else None,
                dd_video=_resolve(str(dd_video), video_base) if dd_video is not None else None,
                face_cur_reference=face_cur,
            )
        )
    if not requests:
        raise ValueError(f"`manifest` {path!r} has no rows.")
    return requests
