"""Benchmark generation on a Ray Data actor pool: one pipeline per actor, resumable item by item.

Each item writes `<stem>.mp4` (to watch), `<stem>.gif` (what the published DD read), `<stem>.mkv`
(the generated frames bit-exact, FFV1, for the embedding metrics) and, last, `<stem>.json` (the
sidecar), locally or on object storage. Each file appears whole or not at all, and the sidecar
records their sizes, so an item counts as done only when all are complete: a run killed mid-write
leaves nothing that a re-run mistakes for a finished video.
"""

from __future__ import annotations

import json
import logging
import posixpath
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import ray
from tqdm.auto import tqdm

from pipelines.cluster import connect_or_start_ray
from pipelines.evaluation.benchmarks import BenchmarkItem, BenchmarkSubject
from pipelines.evaluation.config import EvaluationConfig, GenerationSettings, MethodConfig
from pipelines.tracking import absolute_tracking_uri
from videomaker import storage

logger = logging.getLogger(__name__)

MEDIA_SUFFIXES = (".mp4", ".gif", ".mkv")
# The saved file of each kind the metrics can read (EvaluationConfig.embedding_frames / dd_frames).
FRAME_SUFFIXES = {"lossless": ".mkv", "mp4": ".mp4", "gif": ".gif"}


def item_stem(videos_dir: str | Path, item: BenchmarkItem) -> str:
    """Where an item's files go, without suffix: `videos_dir/set/subject/pNN_sSEED` (a path or a URI)."""
    return storage.join(videos_dir, item.item_id)


def is_complete(stem: str | Path) -> bool:
    """True when the sidecar exists and every file it lists has the recorded size."""
    try:
        sidecar = json.loads(storage.read_text(f"{stem}.json"))
        folder = storage.parent(stem)
        return all(storage.size(storage.join(folder, name)) == size for name, size in sidecar["files"].items())
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_item(stem: str | Path, frames: np.ndarray, sidecar: dict, *, fps: int, lossless: bool = True) -> None:
    """mp4, GIF and (with `lossless`) the FFV1 .mkv, then the sidecar naming them with their sizes (the completion marker).

    Each file is written whole or not at all (storage.write_bytes), locally or to object storage.
    The lossless file is about 4-7 MB per 16 frames at 512 px (the mp4 well under 1 MB); leave it
    out (`lossless=False`) only when no metric reads it.
    """
    from videomaker.export import LOSSLESS_SUFFIX, write_gif, write_lossless, write_mp4

    name = posixpath.basename(str(stem))
    sizes = {}
    writers = [(".mp4", write_mp4), (".gif", write_gif)] + ([(LOSSLESS_SUFFIX, write_lossless)] if lossless else [])
    with tempfile.TemporaryDirectory(prefix="videomaker-item-") as scratch:
        for suffix, write in writers:
            local = write(frames, Path(scratch) / f"{name}{suffix}", fps=fps)
            sizes[f"{name}{suffix}"] = storage.upload_file(local, f"{stem}{suffix}")
    storage.write_text(f"{stem}.json", json.dumps({**sidecar, "files": sizes}, indent=2))


def item_row(item: BenchmarkItem) -> dict:
    subject = item.subject
    return {
        "item_id": item.item_id,
        "set": subject.set,
        "subject_id": subject.subject_id,
        "subject_class": subject.subject_class,
        "reference": subject.reference,
        "prompt_index": item.prompt_index,
        "prompt": item.prompt,
        "seed": item.seed,
    }


def row_item(row: dict) -> BenchmarkItem:
    subject = BenchmarkSubject(row["subject_id"], row["set"], row["subject_class"], row["reference"])
    return BenchmarkItem(subject, int(row["prompt_index"]), row["prompt"], int(row["seed"]))


class GenerateBatch:
    """Ray Data callable class: loads the method once per actor, writes each item's files.

    A failed batch is retried one item at a time so one failure (say, a reference without a face for
    IP-Adapter-FaceID) costs only that item; failed items have no sidecar and are retried on re-run.
    """

    def __init__(
        self, method: MethodConfig, settings: GenerationSettings, videos_dir: str, lossless: bool = True, tracking_uri: str | None = None
    ) -> None:
        from pipelines.evaluation.methods import VideoGenerator

        self.generator = VideoGenerator(method, settings, tracking_uri)
        self.settings = settings
        self.videos_dir = videos_dir
        self.lossless = lossless

    def _generate(self, items: list[BenchmarkItem]) -> None:
        from videomaker.pipeline import NEGATIVE_PROMPT_HUMAN, NEGATIVE_PROMPT_OBJECT
        from videomaker.references import load_reference

        for is_human in (True, False):  # one negative prompt per call
            group = [item for item in items if item.subject.is_human == is_human]
            if not group:
                continue
            references = [np.asarray(load_reference(item.subject.reference, argument="reference")) for item in group]
            started = time.perf_counter()
            negative = self.settings.negative_prompt or (NEGATIVE_PROMPT_HUMAN if is_human else NEGATIVE_PROMPT_OBJECT)
            batch = self.generator(references, [i.prompt for i in group], [i.seed for i in group], negative)
            seconds = (time.perf_counter() - started) / len(group)
            for item, frames in zip(group, batch.frames):
                sidecar = {**item_row(item), **batch.provenance, "fps": self.settings.fps, "seconds": round(seconds, 3)}
                write_item(item_stem(self.videos_dir, item), frames, sidecar, fps=self.settings.fps, lossless=self.lossless)

    def __call__(self, batch: dict) -> dict:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        items = [row_item(row) for row in rows]
        errors = [""] * len(items)
        try:
            self._generate(items)
        except Exception:
            logger.warning("Generating a batch of %d items failed; retrying one by one.", len(items), exc_info=True)
            for index, item in enumerate(items):
                try:
                    self._generate([item])
                except Exception as error:
                    errors[index] = f"{type(error).__name__}: {error}"
        return {"item_id": [item.item_id for item in items], "error": errors}


@dataclass
class GenerationSummary:
    """What a generation run did; `failed` maps item id to the error."""

    total: int
    skipped: int
    generated: int
    failed: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


def generate_items(
    items: list[BenchmarkItem], config: EvaluationConfig, videos_dir: str | Path, *, progress: bool = True
) -> GenerationSummary:
    """Generate every item that is not complete yet, on the running (or a local) Ray cluster."""
    started = time.perf_counter()
    pending = [item for item in items if not is_complete(item_stem(videos_dir, item))]
    summary = GenerationSummary(total=len(items), skipped=len(items) - len(pending), generated=0)
    logger.info("Generation: %d items, %d already complete, %d to generate", len(items), summary.skipped, len(pending))
    if not pending:
        return summary
    connect_or_start_ray()
    ds = ray.data.from_items([item_row(item) for item in pending]).map_batches(
        GenerateBatch,
        fn_constructor_kwargs={
            "method": config.method,
            "settings": config.generation,
            "videos_dir": str(videos_dir),
            "lossless": "lossless" in (config.embedding_frames, config.dd_frames),
            "tracking_uri": absolute_tracking_uri(config.mlflow_tracking_uri),  # the registry of a models:/ checkpoint
        },
        **config.generators.map_batches_options(),
    )
    with tqdm(total=len(pending), desc=f"generate {config.method.name}", unit="video", disable=not progress) as bar:
        for batch in ds.iter_batches(batch_size=None):
            for item_id, error in zip(batch["item_id"], batch["error"]):
                if error:
                    summary.failed[item_id] = error
                else:
                    summary.generated += 1
                bar.update(1)
    summary.wall_s = time.perf_counter() - started
    return summary
