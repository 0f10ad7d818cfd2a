"""MLflow set-up shared by every job: one experiment per job kind, artifacts beside the job's output."""

from __future__ import annotations

from pathlib import Path


def artifact_root(output_dir: str) -> str:
    """`<output_dir>/mlflow-artifacts` as a URI, for experiments a job creates (MLflow needs one set)."""
    if "://" in output_dir:
        return f"{output_dir.rstrip('/')}/mlflow-artifacts"
    return (Path(output_dir).expanduser().resolve() / "mlflow-artifacts").as_uri()


def ensure_experiment(tracking_uri: str, name: str, *, output_dir: str, artifact_location: str | None = None) -> str:
    """Point MLflow at `tracking_uri` and return the id of experiment `name`, creating it if needed.

    A new experiment stores artifacts under `artifact_location` or, by default, beside `output_dir`;
    behind a tracking server, by default where the server keeps them (its `--artifacts-destination`,
    so workers on other nodes need no shared disk). An existing experiment keeps its own location.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    if artifact_location is None and not tracking_uri.startswith(("http://", "https://")):
        artifact_location = artifact_root(output_dir)
    return mlflow.create_experiment(name, artifact_location=artifact_location)
