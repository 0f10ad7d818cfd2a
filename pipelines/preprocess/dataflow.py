"""The preprocessing dataflow: sources -> stages -> Parquet, streamed through Ray Data.

plan (driver) -> read plan -> probe -> validate -> shots -> clip sampling (clips inside shots,
seeded reference candidates) -> decode (one row per clip) -> detect (tries the candidates in order;
the first with one usable subject is the reference) -> segment -> highlight -> [encode_latents (latents.encode)]
-> write.

The driver streams the input in shards of `output.sources_per_part` consecutive sources and writes the
sources still to do of each open shard to `_plan/`; it holds one shard at a time and an 8-byte
digest per source for the duplicate check. Ray Data reads the plans in blocks of
`output.sources_per_block`, so only the blocks the executor asks for exist at a time. CPU stages run as
tasks with a fraction of a CPU each; Ray fuses consecutive ones into one task. Detection and
segmentation run where their backends belong: models that load weights on actor pools sized by the
config, weight-free algorithms inside the decode tasks, so their frames never leave the process
that decoded them (bench/RESULTS.md). One writer actor on the driver's node commits each shard when
its last source is done and stages finished rows meanwhile (`output.py`). The driver only sees
the small per-row summaries the writer returns.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pa_fs
import ray
from ray.data import ActorPoolStrategy
from ray.data.block import BlockMetadata
from ray.data.context import DataContext
from ray.data.datasource import Datasource, ReadTask
from tqdm.auto import tqdm

from pipelines.cluster import connect_or_start_ray
from pipelines.preprocess.backends import backend_class, check_backends
from pipelines.preprocess.config import ActorPoolConfig, PreprocessConfig
from pipelines.preprocess.output import (
    DATA_DIR,
    LAYOUT_FILE,
    MARKER_DIR,
    PLAN_DIR,
    OutputState,
    commit_shard,
    committed_rows,
    parquet_bytes,
    plan_path,
    read_plan,
    shard_digest,
    staged_rows,
)
from pipelines.preprocess.schema import WORKING_SCHEMA
from pipelines.preprocess.sources import iter_sources
from pipelines.preprocess.stages.base import StageChain
from pipelines.preprocess.stages.clip_sampling import ClipSamplingStage
from pipelines.preprocess.stages.decode import DecodeStage
from pipelines.preprocess.stages.detect import DetectStage
from pipelines.preprocess.stages.highlight import HighlightStage
from pipelines.preprocess.stages.probe import ProbeStage
from pipelines.preprocess.stages.segment import SegmentStage
from pipelines.preprocess.stages.shots import ShotsStage
from pipelines.preprocess.stages.validate import ValidateStage
from pipelines.preprocess.stages.write import WriteStage
from videomaker import storage
from videomaker.storage import atomic_write, resolve

logger = logging.getLogger(__name__)


@dataclass
class PreprocessResult:
    output_dir: str
    processed: int
    skipped: int
    statuses: Counter = field(default_factory=Counter)
    summary: dict = field(default_factory=dict)


READ_NUM_CPUS = 0.1
# The writer asks for no CPU: its work is I/O, and with a CPU share it waited for one behind the
# decode tasks, which took every CPU as they freed up; rows then sat unwritten for 90 s and more
# (bench/RESULTS.md).
WRITER_NUM_CPUS = 0
OUTPUT_BLOCK_BYTES = 1 << 20


def _actor_stage(ds, stage, kwargs: dict, pool: ActorPoolConfig):
    return ds.map_batches(
        stage,
        fn_constructor_kwargs=kwargs,
        batch_format="pyarrow",
        **pool.map_batches_options(),
    )


def detect_in_tasks(config: PreprocessConfig) -> bool:
    """True when both detectors are weight-free, so detection runs inside the decode tasks."""
    return (
        backend_class("face detector", config.models.face_detector.name).weight_free
        and backend_class("object detector", config.models.object_detector.name).weight_free
    )


def segment_in_tasks(config: PreprocessConfig) -> bool:
    """True when the segmenter is weight-free, so segmentation runs inside the decode tasks."""
    return backend_class("segmenter", config.models.segmenter.name).weight_free


def _decode_task_options(config: PreprocessConfig) -> dict:
    """`map_batches` options of the decode tasks; stages given the same ones fuse into them."""
    # A whole block per call: the chain takes its rows one by one, and Ray Data's slicing of a block
    # into one-row batches cost more than probing a missing file.
    return dict(batch_format="pyarrow", batch_size=None, num_cpus=config.resources.decode_num_cpus)


def decode_stages(config: PreprocessConfig) -> list:
    """probe -> validate -> shots -> clip sampling -> decode, as configured."""
    return [
        ProbeStage(supported_codecs=config.sources.supported_codecs),
        ValidateStage(num_frames=config.clips.num_frames, min_source_side=config.sources.min_side),
        ShotsStage(detector=config.shots.detector, threshold=config.shots.threshold, min_shot_frames=config.shots.min_frames),
        ClipSamplingStage(
            num_frames=config.clips.num_frames,
            stride=config.clips.stride,
            candidates=config.references.candidates,
            seed=config.seed,
            max_clips=config.clips.max_per_source,
            span_frames=config.clips.span_frames,
        ),
        DecodeStage(size=config.clips.size, resize_policy=config.clips.resize_policy),
    ]


def detect_arguments(config: PreprocessConfig) -> dict:
    """`DetectStage` constructor arguments from the config."""
    return dict(
        face_detector=config.models.face_detector,
        object_detector=config.models.object_detector,
        human_classes=config.subjects.human_classes,
        head_scale=config.subjects.head_scale,
        min_face_fraction=config.subjects.min_face_fraction,
        min_object_fraction=config.subjects.min_object_fraction,
        references=config.references.per_clip,
    )


class PlanDatasource(Datasource):
    """The `_plan/` files of a run: one read task per shard."""

    def __init__(self, output_dir: str, shards: list[tuple[int, int]]) -> None:
        super().__init__()
        self.output_dir = output_dir
        self.shards = shards  # (shard, sources to do)

    def estimate_inmemory_data_size(self) -> int:
        return 1024 * sum(n for _, n in self.shards)

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: DataContext | None = None
    ) -> list[ReadTask]:
        # `read_plan` lives in a light module: a read task's worker must not import the stages' libraries.
        return [
            ReadTask(
                partial(read_plan, self.output_dir, shard),
                BlockMetadata(num_rows=n, size_bytes=1024 * n, exec_stats=None, input_files=None),
                schema=WORKING_SCHEMA,
            )
            for shard, n in self.shards
        ]


def task_stages(config: PreprocessConfig) -> list:
    """The stages that run in the decode tasks: decoding, and the weight-free detection, segmentation
    and highlight that follow it, so a clip's frames never leave the process that decoded them."""
    stages = decode_stages(config)
    if detect_in_tasks(config):
        stages.append(DetectStage(**detect_arguments(config)))
        if segment_in_tasks(config):
            stages += [
                SegmentStage(segmenter=config.models.segmenter),
                HighlightStage(human_classes=config.subjects.human_classes, size=config.clips.size, mode=config.references.mode),
            ]
    return stages


def decode_slots(config: PreprocessConfig) -> int:
    """Decode tasks the cluster runs at once."""
    return max(1, math.floor(ray.cluster_resources().get("CPU", 1) / config.resources.decode_num_cpus))


def block_rows(config: PreprocessConfig, shards: list[tuple[int, int]]) -> int:
    """Sources per block: `output.sources_per_block`, or fewer when that leaves some decode slots without work."""
    slots = decode_slots(config)
    total = sum(n for _, n in shards)
    return max(1, min(config.output.sources_per_block, math.ceil(total / (4 * slots))))


def build_dataset(config: PreprocessConfig, shards: list[tuple[int, int]]) -> ray.data.Dataset:
    """The lazy Ray dataset of the whole pipeline over the planned `shards`."""
    # The read is light and must not fuse with decode (a shard would become one task): own resources.
    # One read task per shard, its rows then cut into blocks of `block_rows` as they stream: a block is
    # what one decode task takes. (Ray Data merges the small tables of one read into one block, and a
    # read task per block was ~20 ms of scheduling per 16 sources.)
    rows = block_rows(config, shards)
    ds = ray.data.read_datasource(
        PlanDatasource(config.output_dir, shards), num_cpus=READ_NUM_CPUS, concurrency=1, override_num_blocks=len(shards)
    )
    ds = ds.repartition(target_num_rows_per_block=rows)
    # A decode task hands on its rows as they finish, not once it has made Ray Data's default 128 MB
    # block (hundreds of small clips): the writer stages them within `flush_interval_s`.
    ds.context.target_max_block_size = OUTPUT_BLOCK_BYTES
    in_tasks = task_stages(config)
    ds = ds.map_batches(StageChain(in_tasks), **_decode_task_options(config))
    done = {stage.name for stage in in_tasks}
    if "detect" not in done:
        ds = _actor_stage(ds, DetectStage, detect_arguments(config), config.resources.detect)
    if "segment" not in done:
        if segment_in_tasks(config):  # after a detect actor: in light tasks of their own
            ds = ds.map_batches(StageChain([SegmentStage(segmenter=config.models.segmenter)]), **_decode_task_options(config))
        else:
            ds = _actor_stage(ds, SegmentStage, dict(segmenter=config.models.segmenter), config.resources.segment)
    if "highlight" not in done:
        ds = ds.map_batches(
            StageChain([HighlightStage(human_classes=config.subjects.human_classes, size=config.clips.size, mode=config.references.mode)]),
            batch_format="pyarrow",
            batch_size=1,
            num_cpus=config.resources.cpu_stage_num_cpus,
        )
    if config.latents.encode:
        from pipelines.preprocess.stages.latents import EncodeLatentsStage  # imports torch

        ds = _actor_stage(ds, EncodeLatentsStage, dict(preset=config.latents.preset), config.resources.latents)
    # One writer: shards complete in the order its calls see their rows. If its node is lost, the
    # shards it held open are planned again by `run_preprocess` (their staged rows are kept).
    return ds.map_batches(
        WriteStage,
        fn_constructor_kwargs=dict(output_dir=config.output_dir, flush_interval_s=config.output.flush_interval_s),
        compute=ActorPoolStrategy(size=1),
        batch_format="pyarrow",
        batch_size=None,
        num_cpus=WRITER_NUM_CPUS,
    )


def worker_processes(config: PreprocessConfig, num_cpus: float) -> int:
    """Worker processes the dataflow keeps busy at once on `num_cpus` CPUs.

    Fractional-CPU tasks run more processes than CPUs, but Ray keeps only `num_cpus` idle workers
    (`num_workers_soft_limit`) and restarts the others, each paying seconds of imports: raise the
    limit to this many (bench/RESULTS.md measured the churn).
    """
    resources = config.resources
    pools = [
        pool
        for pool, in_tasks in ((resources.detect, detect_in_tasks(config)), (resources.segment, segment_in_tasks(config)))
        if not in_tasks
    ]
    pools += [config.resources.latents] if config.latents.encode else []
    # Decode tasks, the model actors, the writer and the plan reads (or highlight tasks).
    return math.floor(num_cpus / config.resources.decode_num_cpus) + sum(pool.max_size for pool in pools) + 2


def start_ray_for(config: PreprocessConfig) -> None:
    """Join or start Ray; when it starts here, its idle workers outlive the dataflow's pauses."""
    connect_or_start_ray({"num_workers_soft_limit": worker_processes(config, os.cpu_count() or 1)})


def _shards(tables: Iterator[pa.Table], size: int) -> Iterator[tuple[int, pa.Table]]:
    """(shard number, table of `size` consecutive sources) from a stream of tables of any size."""
    pending, count, shard = [], 0, 0
    for table in tables:
        pending.append(table)
        count += table.num_rows
        while count >= size:
            merged = pa.concat_tables(pending)
            yield shard, merged.slice(0, size)
            shard += 1
            pending, count = [merged.slice(size)], count - size
    if count:
        yield shard, pa.concat_tables(pending)


def _complete_sources(staged: pa.Table) -> set[str]:
    """Sources all of whose rows are staged (a source makes `source_clips` rows, a rejected one 1);
    a row staged twice (by a run killed and the one that redid it) counts once."""
    ids = staged.column("source_id").to_pylist()
    distinct: dict[str, set] = {}
    for source_id, sample_id in zip(ids, staged.column("sample_id").to_pylist()):
        distinct.setdefault(source_id, set()).add(sample_id)
    expected = dict(zip(ids, staged.column("source_clips").to_pylist()))
    return {s for s, rows in distinct.items() if len(rows) >= (expected[s] or 1)}


def check_layout(config: PreprocessConfig) -> None:
    """An output directory keeps its shard size and row-shaping config; refuse a run that would mix."""
    fs, root = resolve(config.output_dir)
    layout = {"sources_per_part": config.output.sources_per_part, "config_hash": config.config_hash()}
    path = f"{root}/{LAYOUT_FILE}"
    if fs.get_file_info(path).type != pa_fs.FileType.File and any(
        fs.get_file_info(pa_fs.FileSelector(f"{root}/{d}", allow_not_found=True)) for d in (DATA_DIR, MARKER_DIR)
    ):
        raise ValueError(
            f"`output_dir` {config.output_dir!r} holds a `data/` or `_markers/` folder but no {LAYOUT_FILE}: a dataset "
            "from another tool or an earlier version of this job. Use a new output_dir; nothing there was changed."
        )
    if fs.get_file_info(path).type == pa_fs.FileType.File:
        with fs.open_input_stream(path) as f:
            found = json.loads(f.read())
        if found != layout:
            raise ValueError(
                f"`output_dir` {config.output_dir!r} holds a dataset written with {found}, this run has {layout}: "
                "resuming would mix incompatible rows. Use the same config (and output.sources_per_part), or a new output_dir."
            )
        return
    fs.create_dir(root, recursive=True)
    atomic_write(path, json.dumps(layout).encode(), filesystem=fs)


@dataclass
class Plan:
    shards: list[tuple[int, int]] = field(default_factory=list)  # (shard, sources to process)
    sources: int = 0
    skipped: int = 0
    committed_here: int = 0


def plan_run(config: PreprocessConfig) -> Plan:
    """Stream the input, decide per shard what is left to do, and write it to `_plan/`."""
    fs, root = resolve(config.output_dir)
    state = OutputState(config.output_dir)
    # Staging of a committed shard (a commit cut short after its marker) or of other sources than
    # the input's now (it changed) is removed as its shard is planned; the rest after the loop.
    staging = state.staging()
    if fs.get_file_info(f"{root}/{PLAN_DIR}").type == pa_fs.FileType.Directory:
        fs.delete_dir(f"{root}/{PLAN_DIR}")  # an earlier run's; rewritten below for what is still open
    plan = Plan()
    columns = {"run_id": config.run_id, "config_hash": config.config_hash()}
    sources = iter_sources(config.input, default_subject_class=config.subjects.default_class)
    shards = 0
    for shard, table in _shards(sources, config.output.sources_per_part):
        shards = shard + 1
        plan.sources += table.num_rows
        digest = shard_digest(table)
        commit = state.commits.get(shard)
        same = commit is not None and commit.digest == digest
        generation = commit.generation + 1 if commit else 1
        for staged_generation, staged_digest, path in staging.pop(shard, []):
            if (staged_generation, staged_digest) != (generation, digest):  # of a committed or an other input
                fs.delete_dir(path)
        attempts: dict[str, int] = {}
        todo = table
        if same:
            if not (config.sources.retry_quarantined and state.marker(shard).get("retryable")):
                plan.skipped += table.num_rows
                continue
            old = committed_rows(fs, root, shard, commit.generation, columns=["source_id", "retryable", "attempt"])
            retry = old.filter(pc.fill_null(old.column("retryable"), False))
            attempts = dict(zip(retry.column("source_id").to_pylist(), retry.column("attempt").to_pylist()))
            todo = table.filter(pc.is_in(table.column("source_id"), pa.array(list(attempts), pa.string())))
        done = _complete_sources(staged_rows(fs, root, shard, generation, digest, columns=["source_id", "sample_id", "source_clips"]))
        if done:
            todo = todo.filter(pc.invert(pc.is_in(todo.column("source_id"), pa.array(sorted(done), pa.string()))))
        plan.skipped += table.num_rows - todo.num_rows
        previous = commit.marker.rsplit("/", 1)[-1] if commit else None
        if todo.num_rows == 0:  # everything left is staged: commit it here
            commit_shard(
                fs, root, shard=shard, digest=digest, generation=generation, current=[], previous=previous, keep_previous_rows=same
            )
            plan.committed_here += 1
            continue
        n = todo.num_rows
        extra = {
            **{k: [v] * n for k, v in columns.items()},
            "attempt": [attempts.get(s, 0) + 1 for s in todo.column("source_id").to_pylist()],
            "shard": [shard] * n,
            "shard_pending": [n] * n,
            "shard_digest": [digest] * n,
            "shard_generation": [generation] * n,
            "shard_previous": [previous] * n,
            "shard_reopened": [same] * n,
        }
        full = {f.name: todo.column(f.name) if f.name in todo.column_names else extra.get(f.name) for f in WORKING_SCHEMA}
        rows = pa.table(
            {k: v if v is not None else pa.nulls(n, WORKING_SCHEMA.field(k).type) for k, v in full.items()}, schema=WORKING_SCHEMA
        )
        fs.create_dir(f"{root}/{PLAN_DIR}", recursive=True)
        atomic_write(plan_path(root, shard), parquet_bytes(rows), filesystem=fs)
        plan.shards.append((shard, n))
    for folders in staging.values():  # shards past the end of the input
        for _, _, path in folders:
            fs.delete_dir(path)
    for shard in [s for s in state.commits if s >= shards]:  # the input has fewer shards now
        state.drop(shard)
    return plan


def dataset_totals(output_dir: str) -> Counter:
    """Rows of the committed dataset by status, from the markers."""
    state = OutputState(output_dir)
    totals: Counter = Counter()
    for shard in state.commits:
        totals.update(state.marker(shard)["by_status"])
    return totals


def run_preprocess(
    config: PreprocessConfig, *, progress: bool = True, on_rows: Callable[[pa.Table], None] | None = None
) -> PreprocessResult:
    """Preprocess every source not yet committed in `config.output_dir`; safe to re-run after a kill.

    `on_rows` is called with each table of summary rows the writer returns (`stages.write.SUMMARY_SCHEMA`).
    """
    started = time.perf_counter()
    storage.check_access(config.input, argument="`input`")
    storage.check_access(config.output_dir, argument="`output_dir`", write=True)
    check_backends(config)  # a wrong backend name or option fails here, before Ray starts
    check_layout(config)
    statuses: Counter = Counter()
    stage_seconds: Counter = Counter()
    processed = 0
    plan = first = plan_run(config)
    logger.info(
        "%d sources, %d already complete, %d to process in %d parts",
        first.sources,
        first.skipped,
        sum(n for _, n in first.shards),
        len(first.shards),
    )
    # A writer lost with its node leaves shards open: plan and run again while that makes progress.
    for round_ in range(3):
        if not plan.shards:
            break
        if round_ == 2:
            raise RuntimeError(
                f"Parts {[s for s, _ in plan.shards][:10]} of {config.output_dir!r} stayed open after "
                "two runs; see the log above for the writer's error, fix it and run the same command again."
            )
        start_ray_for(config)
        total = sum(n for _, n in plan.shards)
        with tqdm(total=total, desc="preprocess", unit="video", disable=not progress) as bar:
            for batch in build_dataset(config, plan.shards).iter_batches(batch_format="pyarrow", batch_size=None):
                if on_rows is not None:
                    on_rows(batch)
                clip = batch.column("clip_index").to_pylist()
                for status, index, timings in zip(batch.column("status").to_pylist(), clip, batch.column("timings_json").to_pylist()):
                    statuses[status] += 1
                    stage_seconds.update(json.loads(timings or "{}"))
                    if not index:  # a source's first clip, or the row of a source rejected whole
                        processed += 1
                        bar.update(1)
                bar.set_postfix(ok=statuses["ok"], quarantined=sum(statuses.values()) - statuses["ok"])
        fs, root = resolve(config.output_dir)
        if not [i for i in fs.get_file_info(pa_fs.FileSelector(f"{root}/{PLAN_DIR}", allow_not_found=True)) if i.is_file]:
            break  # every planned shard committed (its writer deletes its plan)
        left = plan_run(config)
        if sum(n for _, n in left.shards) >= total:
            raise RuntimeError(
                f"Parts {[s for s, _ in left.shards][:10]} of {config.output_dir!r} made no progress; "
                "see the log above for the writer's error."
            )
        if left.shards:
            logger.warning("%d parts were left open (a writer or node was lost); running them again", len(left.shards))
        plan = left
    wall_s = time.perf_counter() - started

    totals = dataset_totals(config.output_dir)
    summary = {
        "run_id": config.run_id,
        "config_hash": config.config_hash(),
        "input": config.input,
        "output_dir": config.output_dir,
        "sources": first.sources,
        "processed_this_run": processed,
        "skipped_complete": first.skipped,
        "this_run_by_status": dict(sorted(statuses.items())),
        "dataset_by_status": dict(sorted(totals.items())),
        "samples": totals["ok"],
        "quarantined": sum(totals.values()) - totals["ok"],
        "wall_s": round(wall_s, 3),
        "clips_per_s": round(statuses["ok"] / wall_s, 4) if wall_s else 0.0,
        "videos_per_s": round(processed / wall_s, 4) if wall_s else 0.0,
        "stage_seconds": {k: round(v, 3) for k, v in sorted(stage_seconds.items())},
        "backends": {
            "face_detector": config.models.face_detector.name,
            "object_detector": config.models.object_detector.name,
            "segmenter": config.models.segmenter.name,
        },
    }
    fs, root = resolve(config.output_dir)
    atomic_write(f"{root}/summary.json", json.dumps(summary, indent=2).encode(), filesystem=fs)
    return PreprocessResult(config.output_dir, processed, first.skipped, statuses, summary)
