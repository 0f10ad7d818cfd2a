"""A scoring run in MLflow, like the scoring part of an evaluation: aggregates as metrics, tables and
the resolved config as artifacts, the manifest as the run's input dataset."""

from __future__ import annotations

from pipelines.configs import to_yaml
from pipelines.scoring.config import ScoringConfig
from pipelines.tracking import (
    FACE_PROTOCOL_TAG,
    JOB_TAG,
    aggregate_metrics,
    backend_params,
    content_digest,
    ensure_experiment,
    file_dataset,
    flatten_params,
)
from videomaker import storage

TABLES = ("records.parquet", "records.csv", "aggregates.json", "aggregates.csv")


def log_scoring(config: ScoringConfig, records: list[dict], aggregates: list[dict]) -> str:
    """Log the scores written to `config.output_dir`; returns the run id.

    Metrics are `<set>.<metric>`, or `<method>.<set>.<metric>` for rows of a named method.
    """
    import mlflow

    experiment_id = ensure_experiment(config.mlflow_tracking_uri, config.mlflow_experiment, output_dir=config.output_dir)
    manifest_digest = content_digest(storage.read_bytes(config.manifest))
    with mlflow.start_run(experiment_id=experiment_id, run_name=config.run_name) as run:
        mlflow.set_tags({JOB_TAG: "score", FACE_PROTOCOL_TAG: config.face_protocol})
        summary = {
            "manifest": config.manifest,
            "videos_dir": config.videos_dir,
            "expected_frames": config.expected_frames,
            "face_protocol": config.face_protocol,
            "dd_gif_frames": config.dd_gif_frames,
            "N": len(records),
        }
        mlflow.log_params(flatten_params(config) | flatten_params(summary) | backend_params(records))  # every config key, dotted
        mlflow.log_text(to_yaml(config), "config.yaml")  # the same keys, to re-run exactly this scoring
        mlflow.log_input(file_dataset(storage.absolute(config.manifest), name="manifest", digest=manifest_digest), context="scoring")
        metrics = {"videos": float(len(records)), "errors": float(sum(r["status"] == "error" for r in records))}
        for row in aggregates:
            prefix = f"{row['method']}.{row['set']}" if row.get("method") else row["set"]
            metrics |= {f"{prefix}.{key}": value for key, value in aggregate_metrics(row).items()}
        mlflow.log_metrics(metrics)
        for name in TABLES:
            with storage.local_file(storage.join(config.output_dir, name)) as path:
                mlflow.log_artifact(str(path), artifact_path="scores")
        return run.info.run_id
