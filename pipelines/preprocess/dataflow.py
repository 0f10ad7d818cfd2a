"""The preprocessing dataflow: sources -> stages -> Parquet, streamed through Ray Data.

probe -> validate -> clip sampling (clip frames + seeded reference candidates) -> decode
-> detect (tries the candidates in order; the first with one usable subject is the reference)
-> segment -> highlight -> [encode_latents] -> write.

CPU stages run as tasks with a fraction of a CPU each; Ray fuses consecutive ones into one task. The
detect and segment stages run where their backends belong: models that load weights (insightface,
Grounding DINO, SAM) on actor pools sized by the config (GPUs, batch size, pool size), weight-free
algorithms (cascade, GrabCut) inside the decode tasks, so their frames never leave the process that
decoded them (bench/RESULTS.md). The writer collects a few rows per part file. Nothing is
materialised: the driver only sees the small per-source summary rows the writer returns.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import ray
from tqdm.auto import tqdm

from pipelines.cluster import connect_or_start_ray
from pipelines.preprocess.backends import backend_class
from pipelines.preprocess.config import ActorPoolConfig, PreprocessConfig
from pipelines.preprocess.schema import WORKING_SCHEMA
from pipelines.preprocess.sources import read_sources
from pipelines.preprocess.stages.clip_sampling import ClipSamplingStage
from pipelines.preprocess.stages.decode import DecodeStage
from pipelines.preprocess.stages.detect import DetectStage
from pipelines.preprocess.stages.highlight import HighlightStage
from pipelines.preprocess.stages.latents import EncodeLatentsStage
from pipelines.preprocess.stages.probe import ProbeStage
from pipelines.preprocess.stages.segment import SegmentStage
from pipelines.preprocess.stages.validate import ValidateStage
from videomaker import storage
from videomaker.storage import resolve
from pipelines.preprocess.stages.write import OutputState, WriteStage

logger = logging.getLogger(__name__)


@dataclass
class PreprocessResult:
    output_dir: str
    processed: int
    skipped: int
    statuses: Counter = field(default_factory=Counter)
    summary: dict = field(default_factory=dict)


def _actor_stage(ds, stage, kwargs: dict, pool: ActorPoolConfig):
    return ds.map_batches(
        stage,
        fn_constructor_kwargs=kwargs,
        batch_format="pyarrow",
        **pool.map_batches_options(),
    )


def detect_in_tasks(config: PreprocessConfig) -> bool:
    """True when both detectors are weight-free, so detection runs inside the decode tasks."""
    return (backend_class("face detector", config.face_detector.name).weight_free
            and backend_class("object detector", config.object_detector.name).weight_free)


def segment_in_tasks(config: PreprocessConfig) -> bool:
    """True when the segmenter is weight-free, so segmentation runs inside the decode tasks."""
    return backend_class("segmenter", config.segmenter.name).weight_free


def _decode_task_options(config: PreprocessConfig) -> dict:
    """`map_batches` options of the decode tasks; stages given the same ones fuse into them."""
    return dict(batch_format="pyarrow", batch_size=1, num_cpus=config.decode_num_cpus)


def decode_stages(config: PreprocessConfig) -> list:
    """probe -> validate -> clip sampling -> decode, as configured."""
    return [
        ProbeStage(supported_codecs=config.supported_codecs),
        ValidateStage(num_frames=config.num_frames, min_source_side=config.min_source_side),
        ClipSamplingStage(
            num_frames=config.num_frames, stride=config.stride, candidates=config.reference_candidates, seed=config.seed
        ),
        DecodeStage(size=config.size, resize_policy=config.resize_policy),
    ]


def detect_arguments(config: PreprocessConfig) -> dict:
    """`DetectStage` constructor arguments from the config."""
    return dict(
        face_detector=config.face_detector,
        object_detector=config.object_detector,
        human_classes=config.human_classes,
        head_scale=config.head_scale,
        min_face_fraction=config.min_face_fraction,
    )


def decode_chain(rows: list[dict], config: PreprocessConfig):
    """The lazy dataset of probe -> validate -> clip sampling -> decode over `rows` (working-schema dicts)."""
    table = pa.Table.from_pylist(rows, schema=WORKING_SCHEMA)
    # One small block per source lets the CPU stages spread over all cores from the start.
    ds = ray.data.from_arrow([table.slice(i, 1) for i in range(table.num_rows)])
    for stage in decode_stages(config):
        ds = ds.map_batches(stage, **_decode_task_options(config))
    return ds


def build_dataset(rows: list[dict], config: PreprocessConfig):
    """The lazy Ray dataset of the whole pipeline over `rows` (working-schema dicts)."""
    tasks = _decode_task_options(config)
    ds = decode_chain(rows, config)
    detect = detect_arguments(config)
    if detect_in_tasks(config):
        ds = ds.map_batches(DetectStage(**detect), **tasks)
    else:
        ds = _actor_stage(ds, DetectStage, detect, config.detect)
    if segment_in_tasks(config):
        ds = ds.map_batches(SegmentStage(segmenter=config.segmenter), **tasks)
    else:
        ds = _actor_stage(ds, SegmentStage, dict(segmenter=config.segmenter), config.segment)
    # Highlight joins the tasks before it, or after a segment actor the light tasks of the writer.
    highlight_cpus = config.decode_num_cpus if segment_in_tasks(config) else config.cpu_stage_num_cpus
    ds = ds.map_batches(HighlightStage(human_classes=config.human_classes, size=config.size), batch_format="pyarrow",
                        batch_size=1, num_cpus=highlight_cpus)
    if config.encode_latents:
        ds = _actor_stage(ds, EncodeLatentsStage, dict(preset=config.latent_preset), config.latents)
    ds = ds.map_batches(WriteStage(output_dir=config.output_dir), batch_format="pyarrow", batch_size=4,
                        num_cpus=config.cpu_stage_num_cpus)
    # Ray Data reserves an equal share of the CPUs for every operator. The writer needs a sliver of
    # its share, and the rest sat idle: a fifth of a 2-core node (bench/RESULTS.md). Without the
    # reservation, a writer task still runs as soon as a decode task frees its CPUs.
    ds.context.op_resource_reservation_enabled = False
    return ds


def worker_processes(config: PreprocessConfig, num_cpus: float) -> int:
    """Worker processes the dataflow keeps busy at once on `num_cpus` CPUs.

    Fractional-CPU tasks run more processes than CPUs, but Ray keeps only `num_cpus` idle workers
    (`num_workers_soft_limit`) and restarts the others, each paying seconds of imports: raise the
    limit to this many (bench/RESULTS.md measured the churn).
    """
    pools = [pool for pool, in_tasks in ((config.detect, detect_in_tasks(config)), (config.segment, segment_in_tasks(config)))
             if not in_tasks]
    pools += [config.latents] if config.encode_latents else []
    # Decode tasks, the model actors, and the writer's (or highlight -> write) tasks.
    return math.floor(num_cpus / config.decode_num_cpus) + sum(pool.max_size for pool in pools) + 2


def start_ray_for(config: PreprocessConfig) -> None:
    """Join or start Ray; when it starts here, its idle workers outlive the dataflow's pauses."""
    connect_or_start_ray({"num_workers_soft_limit": worker_processes(config, os.cpu_count() or 1)})


def run_preprocess(config: PreprocessConfig, *, progress: bool = True) -> PreprocessResult:
    """Preprocess every source not yet complete in `config.output_dir`; safe to re-run after a kill."""
    started = time.perf_counter()
    storage.check_access(config.input, argument="`input`")
    storage.check_access(config.output_dir, argument="`output_dir`", write=True)
    sources = read_sources(config.input, default_subject_class=config.default_subject_class)
    state = OutputState(config.output_dir)
    todo = [s for s in sources if not state.is_done(s["sample_id"], retry_quarantined=config.retry_quarantined)]
    rows = [
        {**s, "run_id": config.run_id, "config_hash": config.config_hash(), "attempt": state.attempt(s["sample_id"])}
        for s in todo
    ]
    logger.info("%d sources, %d already complete, %d to process", len(sources), len(sources) - len(todo), len(todo))

    statuses: Counter = Counter()
    stage_seconds: Counter = Counter()
    if rows:
        start_ray_for(config)
        with tqdm(total=len(rows), desc="preprocess", unit="video", disable=not progress) as bar:
            for batch in build_dataset(rows, config).iter_batches(batch_format="pyarrow", batch_size=None):
                for row in batch.to_pylist():
                    statuses[row["status"]] += 1
                    stage_seconds.update(json.loads(row["timings_json"] or "{}"))
                    bar.update(1)
                bar.set_postfix(ok=statuses["ok"], quarantined=sum(statuses.values()) - statuses["ok"])
    wall_s = time.perf_counter() - started

    final = OutputState(config.output_dir)
    totals = Counter(final.sources[s["sample_id"]]["status"] for s in sources if s["sample_id"] in final.sources)
    summary = {
        "run_id": config.run_id,
        "config_hash": config.config_hash(),
        "input": config.input,
        "output_dir": config.output_dir,
        "sources": len(sources),
        "processed_this_run": len(rows),
        "skipped_complete": len(sources) - len(todo),
        "this_run_by_status": dict(sorted(statuses.items())),
        "dataset_by_status": dict(sorted(totals.items())),
        "samples": totals["ok"],
        "quarantined": sum(totals.values()) - totals["ok"],
        "wall_s": round(wall_s, 3),
        "clips_per_s": round(statuses["ok"] / wall_s, 4) if wall_s else 0.0,
        "videos_per_s": round(len(rows) / wall_s, 4) if wall_s else 0.0,
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stage_seconds.items())},
        "backends": {
            "face_detector": config.face_detector.name,
            "object_detector": config.object_detector.name,
            "segmenter": config.segmenter.name,
        },
    }
    fs, root = resolve(config.output_dir)
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root}/summary.json") as stream:
        stream.write(json.dumps(summary, indent=2).encode())
    return PreprocessResult(config.output_dir, len(rows), len(sources) - len(todo), statuses, summary)
