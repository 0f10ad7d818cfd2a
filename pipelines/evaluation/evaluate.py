"""One evaluation: check the benchmark, generate (or import) the videos, score them, report, log.

Layout of `output_dir`:
    evaluation.json                 the method and settings the videos belong to (guards resume)
    videos/<set>/<subject>/pNN_sSEED.{mp4,gif,mkv,json}   mkv: the frames bit-exact (FFV1)
    videos/<set>/grid.html          side-by-side page of the set
    scores/samples.parquet|.csv     one row per video, keyed by (set, subject_id, prompt, seed)
    scores/aggregates.json|.csv     per set
    score_cache/                    scores per (video, unit, backend, protocol) a re-run reuses (metrics.score_cache)
    summary.json                    counts, timings, MLflow run id
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace

import pyarrow as pa

from metrics.aggregate import aggregate
from metrics.opens2v import SET_DOMAINS, result_file_name
from metrics.records import ScoreRequest
from metrics.suite import check_groups
from pipelines.configs import write_resolved
from pipelines.evaluation.benchmarks import BenchmarkItem, benchmark_items, read_benchmark_manifest
from pipelines.evaluation.config import EvaluationConfig
from pipelines.evaluation.generation import FRAME_SUFFIXES, GenerationSummary, generate_items, item_stem
from pipelines.evaluation.opens2v import is_opens2v_manifest, opens2v_items, read_opens2v_manifest, write_opens2v_outputs
from pipelines.registry import is_model_uri
from pipelines.scoring.dataflow import score_videos, write_results
from videomaker import storage

logger = logging.getLogger(__name__)

IDENTITY_FILE = "evaluation.json"


@dataclass
class EvaluationResult:
    output_dir: str
    records: list[dict]
    aggregates: list[dict]
    generation: GenerationSummary
    run_id: str | None
    wall_s: float

    @property
    def errors(self) -> int:
        """Items without a score: no video, or a video that could not be scored."""
        return sum(r["status"] != "ok" for r in self.records)


def _identity(config: EvaluationConfig) -> dict:
    """What makes two runs' videos interchangeable: the method and the sampler settings."""
    generation = asdict(config.generation)
    generation.pop("device")  # the same model on another device makes the same videos
    return {"method": asdict(config.method), "generation": generation}


def pin_registered_checkpoint(config: EvaluationConfig) -> EvaluationConfig:
    """`models:/NAME@ALIAS` (or `latest`) -> `models:/NAME/VERSION`, read once: every actor, the resume
    guard and the MLflow run then see one version even if the alias moves during the evaluation."""
    checkpoint = config.method.checkpoint
    if config.method.kind != "videomaker" or not is_model_uri(checkpoint):
        return config
    from pipelines.registry import PRESET_TAG, resolve

    if not config.mlflow_tracking_uri:
        raise ValueError(f"`method.checkpoint` {checkpoint!r} is read from MLflow's Model Registry: set `mlflow_tracking_uri`.")
    ref = resolve(checkpoint, config.mlflow_tracking_uri)
    trained_on = ref.tags.get(PRESET_TAG)
    if trained_on is not None and trained_on != config.method.preset:  # before every actor downloads it to find out
        raise ValueError(
            f"`method.checkpoint` {checkpoint!r} ({ref.uri}) was trained on preset {trained_on!r}, but `method.preset` is "
            f"{config.method.preset!r}: set method.preset={trained_on}."
        )
    if ref.uri != checkpoint:
        logger.info("%s is %s", checkpoint, ref.uri)
    return replace(config, method=replace(config.method, checkpoint=ref.uri))


def check_output_dir(config: EvaluationConfig) -> None:
    """Refuse to resume into a directory whose videos another method or setting made."""
    path = storage.join(config.output_dir, IDENTITY_FILE)
    identity = _identity(config)
    if storage.exists(path):
        previous = json.loads(storage.read_text(path))
        if previous != identity:
            raise ValueError(
                f"`output_dir` {config.output_dir!r} holds videos of another method or sampler settings "
                f"({path}); use a new output_dir, or delete it to start over.\n  there: {previous}\n  now:   {identity}"
            )
    else:
        storage.write_text(path, json.dumps(identity, indent=2))


def scored_file(stem: str, preferred: str) -> str:
    """The file of an item a metric reads: the `preferred` kind (lossless, mp4, gif) if the item has
    it, else the first it has in that order (an imported item has only its one file)."""
    order = [FRAME_SUFFIXES[preferred]] + [s for s in FRAME_SUFFIXES.values() if s != FRAME_SUFFIXES[preferred]]
    try:
        files = json.loads(storage.read_text(f"{stem}.json"))["files"]
    except (OSError, ValueError, KeyError):
        return f"{stem}{order[0]}"  # missing: scoring records it as video_missing
    ranked = sorted(files, key=lambda name: next((i for i, s in enumerate(order) if name.endswith(s)), len(order)))
    return storage.join(storage.parent(stem), ranked[0]) if ranked else f"{stem}{order[0]}"


def score_requests_of(items: list[BenchmarkItem], config: EvaluationConfig, videos_dir: str) -> list[ScoreRequest]:
    """One request per item: the embedding metrics read `embedding_frames`' file, DD `dd_frames`' file."""
    return [
        ScoreRequest(
            video=scored_file(item_stem(videos_dir, item), config.embedding_frames),
            dd_video=scored_file(item_stem(videos_dir, item), config.dd_frames),
            subject_id=item.subject.subject_id,
            prompt=item.prompt,
            reference=item.subject.reference,
            set=item.subject.set,
            subject_class="person" if item.subject.is_human else item.subject.subject_class,
            method=config.method.name,
            seed=item.seed,
            face_cur_reference=item.subject.face_cur_reference,
        )
        for item in items
    ]


def sample_table(items: list[BenchmarkItem], records: list[dict]) -> pa.Table:
    """Records with the item id and prompt index in front: the per-sample table of the run."""
    from metrics.records import records_table

    table = records_table(records)
    table = table.add_column(0, "prompt_index", pa.array([item.prompt_index for item in items], pa.int32()))
    return table.add_column(0, "item_id", pa.array([item.item_id for item in items], pa.string()))


def run_evaluation(config: EvaluationConfig, *, progress: bool = True) -> EvaluationResult:
    """Evaluate `config.method` on the benchmark; re-running the same config resumes."""
    started = time.perf_counter()
    storage.check_access(config.benchmark, argument="`benchmark`")  # unreachable storage fails before any work
    storage.check_access(config.output_dir, argument="`output_dir`", write=True)
    config = pin_registered_checkpoint(config)
    for argument, location in (("`method.checkpoint`", config.method.checkpoint), ("`method.videos`", config.method.videos)):
        if location and not is_model_uri(location):
            storage.check_access(location, argument=argument)
    opens2v_entries = None
    if is_opens2v_manifest(config.benchmark):  # OpenS2V-Eval's *_Eval.json: its entries, prompts and naming
        opens2v_entries = read_opens2v_manifest(config.benchmark)
        items = opens2v_items(opens2v_entries, seeds=config.seeds)
        # The manifest's domain decides the set; its own metrics join the pass.
        config = replace(config, sets=sorted({item.subject.set for item in items}), metric_groups=(*config.metric_groups, "opens2v"))
        config = replace(config, metric_groups=check_groups(config.metric_groups))
        result_file_name(config.run_name or "run", SET_DOMAINS[config.sets[0]])  # a bad run name fails now, not after scoring
    else:
        subjects = read_benchmark_manifest(config.benchmark)  # every bad row is reported before any work
        items = benchmark_items(subjects, sets=config.sets, seeds=config.seeds, prompts_per_subject=config.prompts_per_subject)
    if not items:
        raise ValueError(f"`benchmark` {config.benchmark!r} has no subjects in the sets {config.sets}.")
    check_output_dir(config)
    output = storage.absolute(config.output_dir)
    write_resolved(config, output)  # config.yaml: every key this evaluation ran with, --set and flags included
    videos_dir = storage.join(output, "videos")

    if config.method.kind == "imported":
        from pipelines.evaluation.imports import import_videos

        generation = import_videos(items, config.method.videos, videos_dir)
    else:
        generation = generate_items(items, config, videos_dir, progress=progress)
    for item_id, error in generation.failed.items():
        logger.warning("No video for %s: %s", item_id, error)

    records = score_videos(
        score_requests_of(items, config, videos_dir),
        backends=config.backends,
        scorers=config.scorers,
        expected_frames=config.expected_frames,
        face_protocol=config.face_protocol,
        dd_gif_frames=config.dd_gif_frames,
        metric_groups=config.metric_groups,
        cache_dir=(config.score_cache_dir or storage.join(output, "score_cache")) if config.score_cache else None,
        progress=progress,
    )
    aggregates = aggregate(records)
    write_results(sample_table(items, records), aggregates, storage.join(output, "scores"), name="samples")

    from pipelines.evaluation.report import write_set_page

    for set_name in config.sets:
        set_records = [r for r in records if r["set"] == set_name]
        if set_records:
            write_set_page(set_records, storage.join(videos_dir, set_name, "grid.html"), title=f"{config.run_name}: {set_name}")
    if opens2v_entries is not None:
        write_opens2v_outputs(items, opens2v_entries, records, videos_dir, storage.join(output, "scores", "opens2v"), config.run_name)

    result = EvaluationResult(output, records, aggregates, generation, None, 0.0)
    if config.mlflow_tracking_uri:
        from pipelines.evaluation.runs import log_evaluation

        result.run_id = log_evaluation(config, items, records, aggregates, generation)
    result.wall_s = time.perf_counter() - started
    summary = {
        "items": len(items),
        "generation": asdict(generation),
        "errors": result.errors,
        "mlflow_run_id": result.run_id,
        "wall_s": round(result.wall_s, 2),
    }
    storage.write_text(storage.join(output, "summary.json"), json.dumps(summary, indent=2))
    return result
