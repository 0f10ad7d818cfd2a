"""Videos made by other code bases (ID-Animator, PhotoMaker, VideoBooth) enter an evaluation here.

They are copied into the evaluation's layout with the same sidecar as generated items, so the
scoring, tables and report treat them exactly like ours.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from pipelines.evaluation.benchmarks import BenchmarkItem
from pipelines.evaluation.generation import GenerationSummary, is_complete, item_row, item_stem
from pipelines.manifests import read_manifest
from videomaker import storage

logger = logging.getLogger(__name__)

IMPORT_COLUMNS = ("set", "subject_id", "prompt", "seed", "video")


def import_videos(items: list[BenchmarkItem], manifest: str | Path, videos_dir: str | Path) -> GenerationSummary:
    """Copy the listed videos of `items` into `videos_dir`; items the manifest lacks are reported as failed.

    Rows are matched to items by (set, subject_id, prompt text, seed). Rows naming no benchmark item,
    or a missing file, are errors listed all at once before anything is copied.
    """
    path = str(manifest) if storage.is_uri(manifest) else str(Path(manifest).expanduser())
    by_key = {(i.subject.set, i.subject.subject_id, i.prompt, i.seed): i for i in items}
    rows = read_manifest(path, required=IMPORT_COLUMNS, where="`method.videos`")
    matched, problems = {}, []
    for number, row in enumerate(rows, start=1):
        key = (str(row["set"]), str(row["subject_id"]), str(row["prompt"]), int(row["seed"]))
        video = str(row["video"])
        source = storage.relative_to(video if storage.is_uri(video) else str(Path(video).expanduser()), path)
        if key not in by_key:
            continue  # videos of subjects or seeds this evaluation does not run
        if storage.size(source) is None:
            problems.append(f"row {number}: video {str(source)!r} does not exist")
            continue
        matched[key] = source
    if problems:
        raise ValueError(f"`method.videos` {path!r} has {len(problems)} bad row(s):\n  " + "\n  ".join(problems))

    summary = GenerationSummary(total=len(items), skipped=0, generated=0)
    for key, item in by_key.items():
        stem = item_stem(videos_dir, item)
        if is_complete(stem):
            summary.skipped += 1
            continue
        source = matched.get(key)
        if source is None:
            summary.failed[item.item_id] = f"not in {path!r}"
            continue
        target = f"{stem}{storage.suffix(source)}"
        size = storage.write_bytes(target, storage.read_bytes(source))
        sidecar = {**item_row(item), "method": "imported", "source": str(source), "files": {storage.name(target): size}}
        storage.write_text(f"{stem}.json", json.dumps(sidecar, indent=2))
        summary.generated += 1
    logger.info("Imported %d videos (%d already present, %d missing)", summary.generated, summary.skipped, len(summary.failed))
    return summary
