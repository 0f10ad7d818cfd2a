"""The side-by-side HTML page of a set: per subject, a row per prompt and a column per seed.

Each cell shows a strip of four frames embedded in the page (so it renders inside the MLflow UI
without any other file), the metrics of that video, and a link to its GIF next to the page.
Under them, the video's evidence from its record: per frame (numbered from 0) whether a face was
found, its Face Sim, CLIP-I and DINO-I; DD's flow score per pair against the threshold; and, in
words, why a score is missing. Static HTML with inline CSS, no script.
"""

from __future__ import annotations

import base64
import html
import io
import json
import posixpath
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from videomaker import storage

STRIP_FRAMES = 4
STRIP_HEIGHT = 96


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def frame_strip(video: str | Path) -> Image.Image | None:
    """Four evenly spaced frames side by side, `STRIP_HEIGHT` pixels high; None if unreadable."""
    from metrics.io import MediaError, read_video

    try:
        frames = read_video(video)
    except MediaError:
        return None
    picks = np.linspace(0, len(frames) - 1, STRIP_FRAMES).round().astype(int)
    strip = np.concatenate([frames[i] for i in picks], axis=1)
    scale = STRIP_HEIGHT / strip.shape[0]
    return Image.fromarray(strip).resize((round(strip.shape[1] * scale), STRIP_HEIGHT), Image.BILINEAR)


def _watchable(record: dict) -> str:
    """The file a browser plays: the GIF when one was read (DD's, by default), else the scored video."""
    files = [record.get("dd_video"), record["video"]]
    return next((f for f in files if f and f.lower().endswith(".gif")), record["video"])


def _caption(record: dict) -> str:
    if record["status"] != "ok":
        return f"<span class=err>{html.escape(record['error'] or 'error')}</span>"
    parts = [
        f"CLIP-T {record['clip_t']:.3f}",
        f"CLIP-I {record['clip_i']:.3f}",
        f"DINO-I {record['dino_i']:.3f}",
        f"T.Cons {record['t_cons']:.3f}",
        "dynamic" if record["dd_dynamic"] else "static",
    ]
    if record["face_sim"] is not None:
        parts.insert(1, f"Face {record['face_sim']:.3f} ({record.get('face_protocol') or '?'})")
    return " · ".join(parts)


def _number(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _frame_table(record: dict) -> str:
    """Per frame: face found, Face Sim, CLIP-I, DINO-I; then DD's pair scores, those above the threshold marked."""
    count = len(record.get("frame_clip_i") or [])
    found = record.get("frame_face_found")
    header = "<tr><th>frame</th>" + "".join(f"<th>{k}</th>" for k in range(count)) + "</tr>"
    rows = []
    if found is not None:
        marks = "".join(f"<td class={'face' if f else 'noface'}>{'✓' if f else '✗'}</td>" for f in found)
        rows.append(f"<tr class=face-found><th>face</th>{marks}</tr>")
        sims = "".join(f"<td{'' if f else ' class=noface'}>{_number(v)}</td>" for f, v in zip(found, record["frame_face_sim"]))
        rows.append(f"<tr class=face-sim><th>Face Sim</th>{sims}</tr>")
    for column, label in (("frame_clip_i", "CLIP-I"), ("frame_dino_i", "DINO-I")):
        values = "".join(f"<td>{_number(v)}</td>" for v in record.get(column) or [])
        rows.append(f"<tr class={column.replace('_', '-')}><th>{label}</th>{values}</tr>")
    table = f"<table class=frames>{header}{''.join(rows)}</table>" if count else ""
    pairs, threshold = record.get("dd_pair_scores"), record.get("dd_threshold")
    if pairs is None or threshold is None:
        return table
    cells = "".join(f"<td class={'above' if v > threshold else 'below'}>{v:.2f}</td>" for v in pairs)
    heads = "".join(f"<th>{k}–{k + 1}</th>" for k in range(len(pairs)))
    verdict = "dynamic" if record["dd_dynamic"] else "static"
    summary = (
        f"DD: {record['dd_pairs_above']} of {len(pairs)} pairs above the threshold {threshold:.2f} "
        f"({record['dd_pairs_required']} needed): {verdict}"
    )
    dd = f"<table class=dd><tr><th>pair</th>{heads}</tr><tr class=dd-pairs><th>flow</th>{cells}</tr></table>"
    return f"{table}<div class=dd-summary>{html.escape(summary)}</div>{dd}"


def missing_reasons(record: dict) -> list[str]:
    """Why scores of `record` are missing or rest on fewer frames, in words (frames numbered from 0)."""
    from metrics.suite import GROUP_BACKENDS, METRIC_GROUPS, METRIC_NOTES
    from videomaker.subjects import is_human

    message = record.get("message") or ""
    if record["status"] != "ok":
        return [f"Video not scored ({record.get('error') or 'error'}): {message or 'no message recorded'}"]
    reasons = []
    status, found = record.get("face_status"), record.get("frame_face_found")
    if status == "reference_has_no_face":
        reasons.append("Reference without a face: Face Sim not scored.")
    elif status == "no_face_in_video":
        reasons.append("No face in any frame: Face Sim not scored (the video is left out of the average).")
    elif status == "not_scored" and is_human(record.get("subject_class") or ""):
        reasons.append("Face Sim not computed: no face backend was configured.")
    elif status == "not_scored":
        reasons.append(f"Face Sim not computed: subject class {record.get('subject_class')!r} (faces are scored for persons only).")
    if found is not None and not all(found) and status != "no_face_in_video":
        frames = ", ".join(str(k) for k, f in enumerate(found) if not f)
        reasons.append(f"No face in frame(s) {frames}; Face Sim averages the other {sum(found)} of {len(found)}.")
    try:
        loaded = set(json.loads(record.get("backends") or "{}"))
    except ValueError:
        loaded = set()
    for group in [g for g in (record.get("metric_groups") or "").split(",") if g and g != "paper"]:
        for metric in METRIC_GROUPS.get(group, ()):
            role = GROUP_BACKENDS.get(metric)
            if record.get(metric) is not None or (metric == "facesim_cur" and status == "not_scored"):
                continue
            if role and role not in loaded:
                reasons.append(f"{metric} ({group} group) left empty: no `{role}` backend configured.")
            else:  # the suite's note for this metric (metrics.suite.MetricSuite._extra), not another metric's
                own = [note for note in message.split("; ") if note.startswith(METRIC_NOTES.get(metric, "\0"))]
                reasons.append(f"{metric} ({group} group) left empty: {'; '.join(own) or 'no reason recorded'}")
    return reasons


def evidence_block(record: dict) -> str:
    """The evidence under one video: the per-frame table, DD's pairs and the reasons for missing scores."""
    reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in missing_reasons(record))
    listed = f"<ul class=reasons>{reasons}</ul>" if reasons else ""
    return f"<div class=evidence>{_frame_table(record) if record['status'] == 'ok' else ''}{listed}</div>"


def write_set_page(records: list[dict], page: str | Path, *, title: str) -> str:
    """Write the grid of one set's records (which carry `video`, `reference`, metrics) to `page` (a path or URI).

    GIF links are relative to the page, so the page must sit above the videos it shows.
    """
    from metrics.io import MediaError, read_image

    page = storage.absolute(page)
    subjects: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        subjects[record["subject_id"]].append(record)
    seeds = sorted({r["seed"] for r in records})
    body = [f"<h1>{html.escape(title)}</h1>"]
    for subject_id in sorted(subjects):
        rows = subjects[subject_id]
        body.append(f"<h2>{html.escape(subject_id)}</h2>")
        try:
            reference = Image.fromarray(read_image(rows[0]["reference"]))
            reference.thumbnail((STRIP_HEIGHT * 2, STRIP_HEIGHT))
            body.append(f"<img class=ref src='{_data_uri(reference)}'>")
        except MediaError as error:  # its records are errors saying so; the page still shows them
            body.append(f"<p class=err>{html.escape(str(error))}</p>")
        body.append("<table><tr><th>prompt</th>" + "".join(f"<th>seed {s}</th>" for s in seeds) + "</tr>")
        by_prompt: dict[str, dict[int, dict]] = defaultdict(dict)
        for record in rows:
            by_prompt[record["prompt"]][record["seed"]] = record
        for prompt, by_seed in by_prompt.items():
            cells = []
            for seed in seeds:
                record = by_seed.get(seed)
                if record is None:
                    cells.append("<td></td>")
                    continue
                strip = frame_strip(record["video"])
                link = posixpath.relpath(storage.absolute(_watchable(record)), storage.parent(page))
                image = f"<a href='{html.escape(link)}'><img src='{_data_uri(strip)}'></a>" if strip else ""
                cells.append(f"<td>{image}<div>{_caption(record)}</div>{evidence_block(record)}</td>")
            body.append(f"<tr><td class=prompt>{html.escape(prompt)}</td>{''.join(cells)}</tr>")
        body.append("</table>")
    style = (
        "body{font-family:sans-serif} td{vertical-align:top;font-size:11px;padding:4px} "
        "td.prompt{max-width:220px;font-size:13px} .err{color:#b00} img.ref{border:1px solid #ccc} "
        ".evidence{margin-top:4px} .evidence table{border-collapse:collapse;font-size:9px} "
        ".evidence td,.evidence th{border:1px solid #ddd;padding:1px 2px;text-align:right} "
        ".evidence th{background:#f4f4f4;font-weight:normal} td.face{background:#dfd} td.noface{background:#fdd;color:#900} "
        "td.above{background:#ddf} td.below{color:#777} .dd-summary{margin:3px 0} "
        "ul.reasons{margin:3px 0;padding-left:16px;color:#900}"
    )
    storage.write_text(page, f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{style}</style>{''.join(body)}")
    return page
