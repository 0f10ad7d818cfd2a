"""Evaluations in MLflow: a parent run per evaluation, a nested run per set; finding them again.

Parent: params (method, checkpoint, preset, seeds, N, metric backends and their digests, the Face
Sim protocol and which saved file each metric read),
`<set>.<metric>` metrics, the per-sample table and aggregates. Nested run per set: that set's
metrics, its per-sample table, its videos and the side-by-side `videos/grid.html` page.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.configs import to_yaml
from pipelines.evaluation.benchmarks import BenchmarkItem
from pipelines.evaluation.config import EvaluationConfig
from pipelines.evaluation.generation import GenerationSummary
from pipelines.registry import find_version_evaluation, is_model_uri, registered_lineage, resolve
from pipelines.tracking import (
    CHECKPOINT_TAG,
    FACE_PROTOCOL_TAG,
    JOB_TAG,
    KIND_TAG,
    METHOD_TAG,
    PRESET_TAG,
    SET_TAG,
    aggregate_metrics,
    backend_params,
    checkpoint_lineage,
    content_digest,
    ensure_experiment,
    file_dataset,
    flatten_params,
)
from videomaker import storage

if TYPE_CHECKING:  # mlflow is imported where a run is looked up, not with this module
    from mlflow.entities import Run

SAMPLES_ARTIFACT = "scores/samples.parquet"
TABLE_COLUMNS = (
    "item_id",
    "set",
    "subject_id",
    "prompt_index",
    "prompt",
    "seed",
    "status",
    "error",
    "clip_t",
    "face_sim",
    "clip_i",
    "dino_i",
    "t_cons",
    "dd_dynamic",
    "face_detection_rate",
    "face_protocol",
    "video",
    "dd_video",
)


def _log_table(mlflow, samples, artifact_file: str) -> None:
    frame = samples.select(list(TABLE_COLUMNS)).to_pandas()
    mlflow.log_table(data=frame, artifact_file=artifact_file)


def _log_videos(mlflow, directory: Path) -> None:
    """The set's mp4s, GIFs, sidecars and grid page under `videos/`; the lossless .mkv copies (about
    12 GB per human table) stay in the output directory only."""
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix != ".mkv"):
        folder = path.parent.relative_to(directory).as_posix()
        mlflow.log_artifact(str(path), artifact_path="videos" if folder == "." else f"videos/{folder}")


def log_evaluation(
    config: EvaluationConfig, items: list[BenchmarkItem], records: list[dict], aggregates: list[dict], generation: GenerationSummary
) -> str:
    """Log the evaluation in `config.output_dir` to MLflow; returns the parent run id."""
    import mlflow

    experiment_id = ensure_experiment(config.mlflow_tracking_uri, config.mlflow_experiment, output_dir=config.output_dir)
    output = storage.absolute(config.output_dir)
    samples = pq.read_table(storage.open_input(storage.join(output, SAMPLES_ARTIFACT)))
    method = config.method
    with mlflow.start_run(experiment_id=experiment_id, run_name=config.run_name) as parent:
        mlflow.set_tags(
            {
                JOB_TAG: "evaluate",
                METHOD_TAG: method.name,
                KIND_TAG: method.kind,
                CHECKPOINT_TAG: str(method.checkpoint),
                PRESET_TAG: method.preset,
                FACE_PROTOCOL_TAG: config.face_protocol,
            }
            | checkpoint_lineage(method.checkpoint)  # the training run and step of the checkpoint, if ours
            | registered_lineage(method.checkpoint, config.mlflow_tracking_uri)  # the same for a models:/ version
        )
        benchmark = file_dataset(
            storage.absolute(config.benchmark), name="benchmark", digest=content_digest(storage.read_bytes(config.benchmark))
        )
        mlflow.log_input(benchmark, context="benchmark", tags={"subjects": str(len({item.subject.subject_id for item in items}))})
        # Every key of the resolved config (dotted), then the summary the runs table is read by.
        params = flatten_params(config) | flatten_params(
            {
                "method": method.name,
                "kind": method.kind,
                "checkpoint": method.checkpoint,
                "preset": method.preset,
                "seeds": config.seeds,
                "N": len(items),
                "sets": config.sets,
                "prompts_per_subject": config.prompts_per_subject,
                "face_protocol": config.face_protocol,
                "embedding_frames": config.embedding_frames,
                "dd_frames": config.dd_frames,
                "dd_gif_frames": config.dd_gif_frames,
            }
        )
        # inference switches overriding the checkpoint's as one JSON value (null: the checkpoint's own)
        params["method.switches"] = json.dumps(method.switches, sort_keys=True)
        params |= {f"generation.{k}": v for k, v in config.as_params().items() if k.startswith("generation.")}
        params |= backend_params(records)
        mlflow.log_params(params)
        mlflow.log_text(to_yaml(config), "config.yaml")  # the same keys, to re-run exactly this evaluation
        metrics = {"generated": generation.generated, "skipped": generation.skipped, "failed": len(generation.failed)}
        for row in aggregates:
            metrics |= {f"{row['set']}.{key}": value for key, value in aggregate_metrics(row).items()}
        mlflow.log_metrics(metrics)
        with storage.local_dir(storage.join(output, "scores")) as scores:  # a download when on object storage
            mlflow.log_artifacts(str(scores), artifact_path="scores")
        with storage.local_file(storage.join(output, "evaluation.json")) as identity:
            mlflow.log_artifact(str(identity))
        _log_table(mlflow, samples, "samples.json")

        for row in aggregates:
            set_name = row["set"]
            with mlflow.start_run(experiment_id=experiment_id, run_name=f"{config.run_name}/{set_name}", nested=True):
                mlflow.set_tags({JOB_TAG: "evaluate-set", SET_TAG: set_name, METHOD_TAG: method.name})
                mlflow.log_params(
                    flatten_params(
                        {
                            "set": set_name,
                            "N": row["videos"] + row["errors"],
                            "subjects": row["subjects"],
                            "face_protocol": config.face_protocol,
                        }
                    )
                )
                mlflow.log_metrics(aggregate_metrics(row))
                set_samples = samples.filter(pc.equal(samples["set"], set_name))
                _log_table(mlflow, set_samples, "samples.json")
                with tempfile.TemporaryDirectory() as tmp:
                    pq.write_table(set_samples, Path(tmp) / "samples.parquet")
                    mlflow.log_artifact(str(Path(tmp) / "samples.parquet"))
                with storage.local_dir(storage.join(output, "videos", set_name)) as videos:
                    _log_videos(mlflow, Path(videos))
        return parent.info.run_id


def find_evaluation_run(reference: str, *, tracking_uri: str, experiment: str | None = None) -> Run:
    """An evaluation's parent run by run id, by run name (the newest of that name), or the newest
    evaluation of a registered version (`models:/NAME/VERSION`, `models:/NAME@ALIAS`).

    Names are looked up in `experiment` when given, else in every experiment.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if is_model_uri(reference):  # a registered version: its newest evaluation
        run = find_version_evaluation(resolve(reference, tracking_uri), tracking_uri, experiment)
        if run is None:
            raise ValueError(
                f"No evaluation run of {reference!r} at {tracking_uri}"
                + (f" in experiment {experiment!r}" if experiment else "")
                + f"; evaluate it first (videomaker evaluate --checkpoint {reference})."
            )
        return run
    client = mlflow.MlflowClient(tracking_uri)
    try:
        run = client.get_run(reference)
        if run.data.tags.get(JOB_TAG) != "evaluate":
            raise ValueError(f"Run {reference!r} is not an evaluation run (tag {JOB_TAG}={run.data.tags.get(JOB_TAG)!r}).")
        return run
    except MlflowException:
        pass
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        if found is None:
            raise ValueError(f"`experiment` {experiment!r} does not exist at {tracking_uri}.")
        experiment_ids = [found.experiment_id]
    else:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    escaped = reference.replace("'", "\\'")
    runs = client.search_runs(
        experiment_ids,
        f"tags.{JOB_TAG} = 'evaluate' and attributes.run_name = '{escaped}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise ValueError(
            f"No evaluation run with id or name {reference!r} at {tracking_uri}"
            + (f" in experiment {experiment!r}" if experiment else "")
            + "."
        )
    return runs[0]


def load_samples(run: Run, *, tracking_uri: str) -> list[dict]:
    """The per-sample records an evaluation run logged."""
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path=SAMPLES_ARTIFACT, dst_path=tmp, tracking_uri=tracking_uri
        )
        return pq.read_table(path).to_pylist()
