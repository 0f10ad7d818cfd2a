"""MLflow helpers shared by every job: one experiment per job kind, artifacts beside the job's output,
one params formatting (`flatten_params`) and the tag names runs are found by."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any


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
    if experiment is None:
        if artifact_location is None and not tracking_uri.startswith(("http://", "https://")):
            artifact_location = artifact_root(output_dir)
        return mlflow.create_experiment(name, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: TRAINING_RUNS_KIND})
    if EXPERIMENT_KIND_TAG not in experiment.tags:  # experiments made before the tag existed; a user's own kind stays
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, TRAINING_RUNS_KIND)
    return experiment.experiment_id


# MLflow 3's kind for experiments of training runs. MLflow 3.17's UI does not route by it (its GenAI /
# Model training switch does, GenAI in a fresh browser): links to the runs table carry the switch
# (`runs_table_url`); the tag still tells other readers of the store what the experiment holds.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
TRAINING_RUNS_KIND = "custom_model_development"


def absolute_tracking_uri(tracking_uri: str | None) -> str | None:
    """A relative `sqlite:///mlflow.db` made absolute: Ray workers run in other working directories."""
    if tracking_uri and tracking_uri.startswith("sqlite:///") and not tracking_uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(tracking_uri[len('sqlite:///') :]).resolve()}"
    return tracking_uri


def runs_table_url(tracking_uri: str, experiment_id: str) -> str | None:
    """The UI's page of an experiment's runs table in Model training mode; None without a tracking server."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


# Tag names every job sets, so runs are found by the same keys whichever job wrote them.
JOB_TAG = "videomaker.job"
RUN_ID_TAG = "videomaker.run_id"
RUN_NAME_TAG = "videomaker.run_name"
METHOD_TAG = "videomaker.method"
KIND_TAG = "videomaker.kind"
CHECKPOINT_TAG = "videomaker.checkpoint"
PRESET_TAG = "videomaker.preset"
FACE_PROTOCOL_TAG = "videomaker.face_protocol"
SET_TAG = "videomaker.set"
NIGHTLY_VERDICT_TAG = "nightly.verdict"
NIGHTLY_BASELINE_TAG = "nightly.baseline_run_id"
NIGHTLY_FAILED_TAG = "nightly.failed_metrics"
NIGHTLY_RUN_TAG = "nightly.run_id"  # on a registered version: the evaluation run its verdict came from
NIGHTLY_CHAMPION_TAG = "nightly.champion_version"  # on a registered version: the champion it was gated against
NIGHTLY_PROMOTED_TAG = "nightly.promoted"
LATEST_CHECKPOINT_TAG = "checkpoint.latest"
# Lineage: the run that made what this run consumed.
CURATION_RUN_TAG = "videomaker.curation_run_id"  # on a training run: the preprocess run of its dataset
TRAINING_RUN_TAG = "videomaker.training_run_id"  # on an evaluation: the training run of its checkpoint
CHECKPOINT_STEP_TAG = "videomaker.checkpoint_step"

# MLflow refuses longer param values (6000 characters since MLflow 2.x).
MAX_PARAM_LENGTH = 6000


def _param_value(value: Any) -> str:
    """One formatting for every job: lists, tuples and dicts as JSON, other values as `str` (None -> "None")."""
    if isinstance(value, (list, tuple, dict)):
        text = json.dumps(value, sort_keys=True, default=str)
    else:
        text = str(value)
    if len(text) > MAX_PARAM_LENGTH:  # keep the run loggable; the full value is in the saved config
        text = text[: MAX_PARAM_LENGTH - 3] + "..."
    return text


def backend_params(records: list[dict]) -> dict[str, str]:
    """`backend.<role>.<key>` params (name, weights, digest, ...) from the first score record that describes its backends."""
    described = next((json.loads(r["backends"]) for r in records if r.get("backends")), {})
    params = {}
    for role, backend in described.items():
        for key, value in (backend or {"name": None}).items():
            params[f"backend.{role}.{key}"] = str(value)
    return params


def aggregate_metrics(aggregate_row: dict) -> dict[str, float]:
    """The metrics and counts of one aggregate row (`metrics.aggregate`) as MLflow metrics; missing ones left out."""
    from metrics.aggregate import EXTRA_METRICS, METRIC_LABELS

    keys = (*METRIC_LABELS, *EXTRA_METRICS, "videos", "errors", "subjects", "face_detection_rate", "videos_without_face")
    return {key: float(aggregate_row[key]) for key in keys if aggregate_row.get(key) is not None}


def file_dataset(location: str, *, name: str, digest: str) -> object:
    """An MLflow dataset naming a file or folder by location and content digest (nothing is loaded), for `mlflow.log_input`."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # MLflow registers its local-file source twice and warns that it is ambiguous
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(location)
    return MetaDataset(source, name=name, digest=digest)


def content_digest(data: bytes) -> str:
    """The digest datasets are logged with: the first 16 hex digits of SHA-256."""
    import hashlib

    return hashlib.sha256(data).hexdigest()[:16]


def checkpoint_lineage(checkpoint: str | None) -> dict[str, str]:
    """Tags naming the training run and step a VideoMaker training checkpoint came from; {} for other weights.

    Reads the checkpoint's `videomaker.json` (an `ema/` checkpoint: its parent's, which holds the progress).
    """
    from videomaker import storage
    from videomaker.checkpoint import METADATA_FILE

    if not checkpoint or (":" in checkpoint.split("/")[0] and not storage.is_uri(checkpoint)):  # hf:..., models:...
        return {}
    directories = [checkpoint, storage.parent(checkpoint)] if storage.name(checkpoint) == "ema" else [checkpoint]
    for directory in directories:
        location = storage.join(directory, METADATA_FILE)
        progress = json.loads(storage.read_text(location)).get("progress") if storage.exists(location) else None
        if progress and progress.get("mlflow_run_id"):
            return {TRAINING_RUN_TAG: progress["mlflow_run_id"], CHECKPOINT_STEP_TAG: str(progress["global_step"])}
    return {}


def flatten_params(value: Any, prefix: str = "") -> dict[str, str]:
    """Flat `section.key -> string` params for MLflow from a (nested) dataclass or dict.

    Args:
        value: a dataclass instance or a dict; nested dataclasses and non-empty dicts become dotted keys.
        prefix: prepended to every key (`"data"` gives `data.key`).

    Returns:
        `{dotted key: value}` with lists, tuples and empty dicts as JSON (`[0, 1]`, `{}`), other values as
        `str()` (`True`, `1e-05`, `None`), each at most `MAX_PARAM_LENGTH` characters.

    Example:
        >>> flatten_params({"lr": 1e-5, "loss": {"girl": True}, "seeds": [0, 1]})
        {'lr': '1e-05', 'loss.girl': 'True', 'seeds': '[0, 1]'}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict) and value:
        flat: dict[str, str] = {}
        for key, inner in value.items():
            flat |= flatten_params(inner, f"{prefix}.{key}" if prefix else str(key))
        return flat
    if not prefix:
        raise ValueError(f"flatten_params needs a dataclass or a non-empty dict at the top level, got {value!r}.")
    return {prefix: _param_value(value)}
