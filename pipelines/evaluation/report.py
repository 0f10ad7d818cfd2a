"""The side-by-side HTML page of a set: per subject, a row per prompt and a column per seed.

Each cell shows a strip of four frames embedded in the page (so it renders inside the MLflow UI
without any other file), the metrics of that video, and a link to its GIF next to the page.
"""

from __future__ import annotations

import base64
import html
import io
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


def write_set_page(records: list[dict], page: str | Path, *, title: str) -> str:
    """Write the grid of one set's records (which carry `video`, `reference`, metrics) to `page` (a path or URI).

    GIF links are relative to the page, so the page must sit above the videos it shows.
    """
    from metrics.io import read_image

    page = storage.absolute(page)
    subjects: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        subjects[record["subject_id"]].append(record)
    seeds = sorted({r["seed"] for r in records})
    body = [f"<h1>{html.escape(title)}</h1>"]
    for subject_id in sorted(subjects):
        rows = subjects[subject_id]
        reference = Image.fromarray(read_image(rows[0]["reference"]))
        reference.thumbnail((STRIP_HEIGHT * 2, STRIP_HEIGHT))
        body.append(f"<h2>{html.escape(subject_id)}</h2><img class=ref src='{_data_uri(reference)}'>")
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
                cells.append(f"<td>{image}<div>{_caption(record)}</div></td>")
            body.append(f"<tr><td class=prompt>{html.escape(prompt)}</td>{''.join(cells)}</tr>")
        body.append("</table>")
    style = (
        "body{font-family:sans-serif} td{vertical-align:top;font-size:11px;padding:4px} "
        "td.prompt{max-width:220px;font-size:13px} .err{color:#b00} img.ref{border:1px solid #ccc}"
    )
    storage.write_text(page, f"<!doctype html><meta charset=utf-8><title>{html.escape(title)}</title><style>{style}</style>{''.join(body)}")
    return page
