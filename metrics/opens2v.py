"""OpenS2V-Eval's score merge and weighted TotalScore, for its two protocol versions (docs/opens2v.md).

OpenS2V-Eval scores a folder of `<videoid>.mp4` with one script per metric; each writes one JSON
file (`aesthetic_score.json`, `facesim.json`, ...) mapping video id to that metric's values. A merge
step folds the files into per-video values, averages each metric over the videos that have it,
clamps and normalises the averages and weights them into TotalScore. This module does the same
arithmetic, step for step, so a total computed here equals the one OpenS2V's own merge writes:

- v1.0: aesthetics, motion (optical-flow amplitude), FaceSim-Cur, GmeScore, NexusScore, NaturalScore;
- v1.1: motion split into smoothness and amplitude, and new weights.

Rules both versions share, all reproduced here:

- per video: aesthetics clamped to [4, 7]; motion `min(|x|, 1)`; FaceSim-Cur and GmeScore
  `min(x, 1)` (no lower clamp); NexusScore `min(x, 0.05)`, and a NexusScore of exactly 0 is left
  out (not counted); NaturalScore is the mean of the naturalscore runs present, then clamped to [1, 5];
- each metric is averaged over the videos that have it, and is 0 when no video has it; the
  average is then normalised as (avg - low) / (high - low): aesthetics (avg - 4) / 3, NexusScore
  avg / 0.05, NaturalScore (avg - 1) / 4, the others unchanged. So an absent aesthetics gives
  -4/3 and an absent NaturalScore -1/4, exactly as the merge script computes it;
- Human-Domain has no NexusScore and its own weights; every other domain uses the other set.

Values are fractions (0.5231), as the result JSON holds them; the leaderboard prints percentages.

Example:
    >>> per_video = {"singleface_1": {"aes_score": 5.5, "motion_amplitude": 0.3, "motion_smoothness": 0.9,
    ...              "facesim_cur": 0.7, "gme_score": 0.6, "natural_score": 4.0}}
    >>> round(total_score(per_video, domain="Human-Domain", version="v1.1")["total_score"], 4)
    0.67
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from typing import Any

VERSIONS = ("v1.0", "v1.1")
# The merge script's eval types: only "Human-Domain" changes the weights; "Single-Object" is the
# older name of the single-subject set, kept since its files still carry it.
DOMAINS = ("Human-Domain", "Open-Domain", "Single-Domain", "Single-Object")
HUMAN_DOMAIN = "Human-Domain"

# Per-video metric -> (low, high) of the clamp and normalisation.
RANGES = {
    "aes_score": (4.0, 7.0),
    "motion_score": (0.0, 1.0),
    "motion_amplitude": (0.0, 1.0),
    "motion_smoothness": (0.0, 1.0),
    "facesim_cur": (0.0, 1.0),
    "gme_score": (0.0, 1.0),
    "nexus_score": (0.0, 0.05),
    "natural_score": (1.0, 5.0),
}

# (version, human domain?) -> the result JSON's keys after total_score with their weights, in the
# order the merge script writes them and adds the weighted terms up (float sums depend on order).
WEIGHTS: dict[tuple[str, bool], dict[str, float]] = {
    ("v1.0", True): {"aes_score": 0.15, "motion_score": 0.15, "facesim_cur": 0.25, "gme_score": 0.15, "natural_score": 0.30},
    ("v1.0", False): {
        "aes_score": 0.12,
        "motion_score": 0.12,
        "facesim_cur": 0.20,
        "gme_score": 0.12,
        "nexus_score": 0.20,
        "natural_score": 0.24,
    },
    ("v1.1", True): {
        "aes_score": 0.18,
        "motion_smoothness": 0.09,
        "motion_amplitude": 0.03,
        "facesim_cur": 0.25,
        "gme_score": 0.15,
        "natural_score": 0.30,
    },
    ("v1.1", False): {
        "aes_score": 0.16,
        "motion_smoothness": 0.06,
        "motion_amplitude": 0.02,
        "facesim_cur": 0.20,
        "gme_score": 0.12,
        "nexus_score": 0.20,
        "natural_score": 0.24,
    },
}

# The per-metric files each version's scripts write: file stem -> (key inside each video's dict, merged key).
SCORE_FILES: dict[str, dict[str, tuple[str, str]]] = {
    "v1.0": {
        "aesthetic_score": ("aes_score", "aes_score"),
        "motionscore": ("motion_fb", "motion_score"),
        "facesim": ("cur_score", "facesim_cur"),
        "gmescore": ("gme_score", "gme_score"),
        "nexusscore": ("nexus_score", "nexus_score"),
    },
    "v1.1": {
        "aesthetic_score": ("aes_score", "aes_score"),
        "motion_amplitude": ("motion_fb", "motion_amplitude"),
        "motion_smoothness": ("motion_smoothness", "motion_smoothness"),
        "facesim": ("cur_score", "facesim_cur"),
        "gmescore": ("gme_score", "gme_score"),
        "nexusscore": ("nexus_score", "nexus_score"),
    },
}
NATURAL_RUNS = ("naturalscore_1", "naturalscore_2", "naturalscore_3")  # one file per repeated judge run
# v1.1 keeps a motion file's stem as the merged key and replaces it in place (the others are deleted).
_KEPT_IN_PLACE = {"v1.0": (), "v1.1": ("motion_amplitude", "motion_smoothness")}
# Extra values the scripts write beside the one the merge reads (ArcFace similarity, Lucas-Kanade flow).
_EXTRA_FIELDS = {
    "facesim": {"facesim_arc": "arc_score"},
    "motionscore": {"motion_lk": "motion_lk"},
    "motion_amplitude": {"motion_lk": "motion_lk"},
}


def _check_version(version: str) -> str:
    if version not in VERSIONS:
        raise ValueError(f"`version`={version!r} is not an OpenS2V-Eval protocol version; choose from {list(VERSIONS)}.")
    return version


def _check_domain(domain: str) -> str:
    # The merge script treats any name but "Human-Domain" as open: a typo would silently change the weights.
    if domain not in DOMAINS:
        raise ValueError(f"`domain`={domain!r} is not an OpenS2V-Eval domain; choose from {list(DOMAINS)} (spelt exactly so).")
    return domain


def result_keys(*, domain: str, version: str) -> tuple[str, ...]:
    """The keys of the result JSON, in its order: `total_score`, then each sub-score."""
    return ("total_score", *WEIGHTS[(_check_version(version), _check_domain(domain) == HUMAN_DOMAIN)])


def _number(value: Any, *, video: str, metric: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy scalars from records count too
        raise ValueError(
            f"video {video!r} has {metric}={value!r}, not a number; give a number, or leave {metric!r} out for that "
            "video (it is then not counted, as OpenS2V's merge does for a missing entry)."
        )
    return float(value)  # a plain float, so the result JSON serialises


def _clamped(metric: str, value: float) -> float | None:
    """One video's value as the merge script counts it, or None when it is not counted (a NexusScore of 0)."""
    low, high = RANGES[metric]
    if metric == "aes_score" or metric == "natural_score":
        return max(min(value, high), low)  # argument order as the script's, so a NaN propagates the same way
    if metric.startswith("motion_"):
        return min(abs(value), high)
    if metric == "nexus_score":
        return None if value == 0 else min(value, high)
    return min(value, high)  # facesim_cur, gme_score: no lower clamp


def counted_videos(per_video: Mapping[str, Mapping[str, Any]], *, version: str) -> dict[str, int]:
    """How many videos each sub-score averages over (0 means the sub-score is the absent value).

    Tells an unexpected total from a missing metric apart: `total_score` never says which.
    """
    metrics = tuple(WEIGHTS[(_check_version(version), False)])
    counts = dict.fromkeys(metrics, 0)
    for video, values in per_video.items():
        for metric in metrics:
            if metric in values and _clamped(metric, _number(values[metric], video=video, metric=metric)) is not None:
                counts[metric] += 1
    return counts


def total_score(per_video: Mapping[str, Mapping[str, Any]], *, domain: str, version: str) -> dict[str, float]:
    """OpenS2V's result JSON from per-video values: `total_score` and the normalised sub-scores.

    Args:
        per_video: Video id -> merged per-video values, keyed as the merge step leaves them:
            `aes_score`, `facesim_cur`, `gme_score`, `nexus_score`, `natural_score` (the mean of the
            judge runs) and `motion_score` (v1.0) or `motion_amplitude` + `motion_smoothness` (v1.1).
            A metric a video lacks is not counted for it; other keys are ignored.
        domain: "Human-Domain" (no NexusScore, its own weights) or another of `DOMAINS`.
        version: "v1.0" or "v1.1".

    Returns:
        The result JSON's dict, keys in its order (`result_keys`): fractions, not percentages.

    Raises:
        ValueError: A value that is not a number (the merge script would crash on it), an unknown
            domain or version.
    """
    human = _check_domain(domain) == HUMAN_DOMAIN
    metrics = tuple(WEIGHTS[(_check_version(version), False)])  # every metric is averaged, even unweighted ones
    totals = dict.fromkeys(metrics, 0)
    counts = dict.fromkeys(metrics, 0)
    for video, values in per_video.items():
        for metric in metrics:
            if metric not in values:
                continue
            value = _clamped(metric, _number(values[metric], video=video, metric=metric))
            if value is not None:
                totals[metric] += value
                counts[metric] += 1
    normalised = {}
    for metric in metrics:
        low, high = RANGES[metric]
        average = totals[metric] / counts[metric] if counts[metric] else 0
        normalised[metric] = (average - low) / (high - low)
    weights = WEIGHTS[(version, human)]
    total = 0.0
    for metric, weight in weights.items():
        total += weight * normalised[metric]
    return {"total_score": total, **{metric: normalised[metric] for metric in weights}}


def merge_score_files(files: Mapping[str, Mapping[str, Any]], *, version: str) -> dict[str, dict[str, Any]]:
    """Per-video values from OpenS2V's per-metric files, folded as its merge step folds them.

    Args:
        files: File stem (the name without `.json`, e.g. "facesim") -> that file's parsed content,
            video id -> value. Every file in the folder takes part, as in OpenS2V's merge.
        version: "v1.0" (motion from `motionscore`) or "v1.1" (`motion_amplitude`, `motion_smoothness`).

    Returns:
        Video id -> values keyed as `total_score` reads them; files the merge does not know stay
        under their stem (and are ignored by `total_score`).

    Raises:
        ValueError: A naturalscore entry that is not a number (the judge answered "error", say), or
            a v1.1 motion entry of an unexpected shape: the merge script would crash on either.
    """
    known = SCORE_FILES[_check_version(version)]
    merged: dict[str, dict[str, Any]] = {}
    for stem, content in files.items():
        if not isinstance(content, Mapping):
            raise ValueError(f"OpenS2V score file {stem}.json holds {type(content).__name__}, not an object of video id -> value.")
        for video, value in content.items():
            merged.setdefault(str(video), {})[stem] = value
    for video, scores in merged.items():
        for stem, (inner, key) in known.items():
            if stem not in scores:
                continue
            entry = scores[stem]
            if stem in _KEPT_IN_PLACE[version]:
                if isinstance(entry, Mapping) and inner in entry:
                    scores[key] = entry[inner]
                elif isinstance(entry, Mapping):
                    raise ValueError(
                        f"{stem}.json entry of video {video!r} has no {inner!r} ({sorted(entry)}); re-run that metric or drop the entry."
                    )
                continue
            if isinstance(entry, Mapping) and inner in entry:
                scores[key] = entry[inner]
            del scores[stem]  # as the script: a file entry of another shape is dropped, not counted
        runs = []
        for stem in NATURAL_RUNS:
            value = scores.pop(stem, None)
            if value is None:
                continue
            try:
                runs.append(float(value))
            except (TypeError, ValueError):
                raise ValueError(
                    f"{stem}.json has {value!r} for video {video!r}, not a score; re-run NaturalScore for that video or "
                    "remove the entry (the video's NaturalScore then averages the other runs)."
                ) from None
        if runs:
            scores["natural_score"] = sum(runs) / len(runs)
    return merged


def read_score_files(folder: str | Path) -> dict[str, Any]:
    """Every `*.json` of an OpenS2V score folder, stem -> parsed content (what `merge_score_files` takes)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"OpenS2V score folder {str(folder)!r} does not exist; give the folder the get_*.py scripts wrote into.")
    files = {}
    for path in sorted(folder.glob("*.json")):
        try:
            files[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"OpenS2V score file {str(path)!r} is not valid JSON ({error}); re-run the metric that wrote it.") from None
    if not files:
        raise ValueError(f"OpenS2V score folder {str(folder)!r} has no .json files.")
    return files


def _natural_text(value: float) -> str:
    # The judge scripts store the model's reply as text ("4"); float() of it is what the merge reads.
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def write_score_files(folder: str | Path, per_video: Mapping[str, Mapping[str, Any]], *, version: str) -> list[Path]:
    """Write per-video values as OpenS2V's per-metric files, in the shape its get_*.py scripts write.

    Args:
        folder: Created if missing; existing files of the same names are replaced.
        per_video: Video id -> values keyed as `total_score` reads them. Also read: `facesim_arc`
            (written as `arc_score` beside `cur_score`), `motion_lk` (beside `motion_fb`), and the judge
            runs `naturalscore_1`..`naturalscore_3` (else `natural_score` is written as run 1).
            A metric no video has gets no file; a None value is left out of its file.
        version: Which version's file names ("motionscore" for v1.0, "motion_amplitude" and
            "motion_smoothness" for v1.1).

    Returns:
        The files written, sorted.
    """
    known = SCORE_FILES[_check_version(version)]
    contents: dict[str, dict[str, Any]] = {}
    for video, values in per_video.items():
        for stem, (inner, key) in known.items():
            if values.get(key) is None:
                continue
            entry = {inner: values[key]}
            for field, name in _EXTRA_FIELDS.get(stem, {}).items():
                if values.get(field) is not None:
                    entry[name] = values[field]
            contents.setdefault(stem, {})[video] = entry
        runs = [stem for stem in NATURAL_RUNS if values.get(stem) is not None]
        if runs:
            for stem in runs:
                contents.setdefault(stem, {})[video] = _natural_text(values[stem])
        elif values.get("natural_score") is not None:
            contents.setdefault(NATURAL_RUNS[0], {})[video] = _natural_text(values["natural_score"])
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, content in sorted(contents.items()):
        path = folder / f"{stem}.json"
        path.write_text(json.dumps(content, indent=4))
        written.append(path)
    return written


def merge_result_folder(folder: str | Path, *, domain: str, version: str) -> dict[str, float]:
    """The whole merge: read a score folder, fold it per video, and return the result JSON's dict.

    Unlike OpenS2V's script, refuses a folder whose motion files belong to the other version (its
    motion would silently count as absent).
    """
    files = read_score_files(folder)
    other = next(v for v in VERSIONS if v != _check_version(version))
    foreign = sorted((set(SCORE_FILES[other]) - set(SCORE_FILES[version])) & set(files))
    if foreign and not (set(SCORE_FILES[version]) - set(SCORE_FILES[other])) & set(files):
        raise ValueError(
            f"OpenS2V score folder {str(folder)!r} has {[f + '.json' for f in foreign]}, written by the {other} scripts; "
            f"merge it with version={other!r}, or re-run the motion metrics with the {version} scripts."
        )
    return total_score(merge_score_files(files, version=version), domain=domain, version=version)


def result_file_name(model_name: str, domain: str) -> str:
    """`<model_name>_<domain>.json`, the name OpenS2V's merge gives the file it submits."""
    if not model_name or any(ch in model_name for ch in "/\\"):
        raise ValueError(f"`model_name`={model_name!r} must be a non-empty name without path separators.")
    return f"{model_name}_{_check_domain(domain)}.json"


def write_result_json(path: str | Path, result: Mapping[str, float]) -> Path:
    """Write a result dict as OpenS2V's merge does (indent 4, keys in order); refuses a non-finite total."""
    if "total_score" not in result:
        raise ValueError(f"`result` has no 'total_score' (keys {sorted(result)}); pass what `total_score` returned.")
    if not all(math.isfinite(float(v)) for v in result.values()):
        raise ValueError(f"`result` holds a non-finite value ({dict(result)}); a NaN per-video value reached the average.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(result), indent=4))
    return path


def read_result_json(path: str | Path) -> dict[str, float]:
    """A result JSON (ours or OpenS2V's): its dict, checked to hold `total_score`."""
    data = json.loads(Path(path).read_text())
    if not isinstance(data, dict) or "total_score" not in data:
        raise ValueError(f"{str(path)!r} is not an OpenS2V result JSON: it needs a 'total_score' key.")
    return data


# Our benchmark sets of OpenS2V-Eval's manifests (pipelines/evaluation/opens2v.py) and their domains.
OPENS2V_SETS = {"Human-Domain": "opens2v_human", "Open-Domain": "opens2v_open", "Single-Domain": "opens2v_single"}
SET_DOMAINS = {set_name: domain for domain, set_name in OPENS2V_SETS.items()}
# Score-record field -> the merged per-video key it feeds, per version. v1.0's motion is the same
# Farneback amplitude v1.1 calls motion_amplitude (only the file name changed).
RECORD_FIELDS = {
    "v1.0": {
        "aes_score": "aes_score",
        "motion_amplitude": "motion_score",
        "facesim_cur_opens2v": "facesim_cur",  # OpenS2V's value (0.0 for a faceless video), not the suite's null
        "gme_score": "gme_score",
        "nexus_score": "nexus_score",
        "natural_score": "natural_score",
    },
    "v1.1": {
        "aes_score": "aes_score",
        "motion_amplitude": "motion_amplitude",
        "motion_smoothness": "motion_smoothness",
        "facesim_cur_opens2v": "facesim_cur",  # OpenS2V's value (0.0 for a faceless video), not the suite's null
        "gme_score": "gme_score",
        "nexus_score": "nexus_score",
        "natural_score": "natural_score",
    },
}
COLUMN_LABELS = {
    "total_score": "TotalScore",
    "aes_score": "Aesthetics",
    "motion_score": "Motion",
    "motion_smoothness": "MotionSmooth.",
    "motion_amplitude": "MotionAmp.",
    "facesim_cur": "FaceSim",
    "gme_score": "GmeScore",
    "nexus_score": "NexusScore",
    "natural_score": "NaturalScore",
}


def per_video_values(
    records: list[Mapping[str, Any]], *, set_name: str, version: str, seed: int | None = None
) -> dict[str, dict[str, float]]:
    """The per-video values `total_score` takes, from a run's "ok" score records of one OpenS2V set.

    A record's field named as in `RECORD_FIELDS` feeds the metric; a missing or None field is not
    counted for that video. With `seed`, that seed's videos keyed by video id, as OpenS2V's files
    key them (one video per id); without, every seed's, keyed `<video id>/s<seed>` (more videos).
    """
    fields = RECORD_FIELDS[_check_version(version)]
    values = {}
    for record in records:
        if record.get("status") != "ok" or record.get("set") != set_name or (seed is not None and record.get("seed") != seed):
            continue
        scored = {key: record[field] for field, key in fields.items() if record.get(field) is not None}
        values[record["subject_id"] if seed is not None else f"{record['subject_id']}/s{record.get('seed')}"] = scored
    return values


def compare_section(runs: list[tuple[str, list[dict]]], *, include_published: bool = True) -> str:
    """OpenS2V-Eval tables for `compare`: per OpenS2V set in the runs and per version, each run's
    TotalScore and sub-scores (runs whose records carry OpenS2V metrics) and the published rows.

    Returns "" when no run has an OpenS2V set. Percentages, as the leaderboard prints them.
    """
    sets = sorted({str(r.get("set")) for _, records in runs for r in records} & set(SET_DOMAINS))
    sections = []
    for set_name in sets:
        domain = SET_DOMAINS[set_name]
        for version in VERSIONS:
            keys = result_keys(domain=domain, version=version)
            body = []
            for label, records in runs:
                values = per_video_values(records, set_name=set_name, version=version)
                if any(values.values()):
                    result = total_score(values, domain=domain, version=version)
                    counts = counted_videos(values, version=version)
                    note = ", ".join(f"{COLUMN_LABELS[k]} absent" for k in keys[1:] if not counts.get(k))
                    body.append([label, str(len(values)), *(f"{100 * result[k]:.2f}" for k in keys), note])
            if include_published:
                from metrics.published import opens2v_published_rows

                for row in sorted(opens2v_published_rows(domain, version=version), key=lambda r: -r["total_score"]):  # as the leaderboard
                    body.append([f"{row['method']} (OpenS2V)", "-", *(f"{100 * row[k]:.2f}" for k in keys), ""])
            if body:
                from metrics.tables import render_table

                header = ["method", "N", *(COLUMN_LABELS[k] for k in keys), "note"]
                title = f"{set_name}: OpenS2V-Eval {version}, {domain} (%)"
                sections.append(f"{title}\n{render_table(header, body, text_columns=(0, -1))}")
    return "\n\n".join(sections)
