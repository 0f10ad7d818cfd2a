"""VideoMaker checkpoints in MLflow's Model Registry: register, resolve `models:/` URIs, download.

A registered version's artifacts are a VideoMaker checkpoint directory (`trainable.safetensors`,
`videomaker.json`, the run's `config.yaml`, `ema/` when EMA is on; not the optimizer state), so
whatever reads a checkpoint directory reads a downloaded version. Versions carry the preset,
switches, step and training run as tags, and `models:/NAME/VERSION`, `models:/NAME@ALIAS` or
`models:/NAME/latest` name them anywhere a checkpoint is taken.

Each process that loads a version downloads it through MLflow (`download_checkpoint`), so with a
tracking server that serves artifacts, nodes need only reach the server, not the driver's disk.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow.entities import Run

logger = logging.getLogger(__name__)

MODELS_PREFIX = "models:/"
CHAMPION = "champion"
CANDIDATE = "candidate"

# Tags on a registered version (the run id is the version's own `run_id`).
PRESET_TAG = "videomaker.preset"
SWITCHES_TAG = "videomaker.switches"
STEP_TAG = "videomaker.step"
RUN_NAME_TAG = "videomaker.run_name"
CHECKPOINT_NAME_TAG = "videomaker.checkpoint_name"
EMA_TAG = "videomaker.ema"
# On an evaluation run of a registered version: which one it evaluated.
MODEL_NAME_TAG = "videomaker.model_name"
MODEL_VERSION_TAG = "videomaker.model_version"

# What a version holds of a training checkpoint: the weights, their metadata and the config, not the
# optimizer and RNG state (several times the weights' size, and only a resume needs it).
CHECKPOINT_FILES = ("trainable.safetensors", "videomaker.json", "config.yaml")


def is_model_uri(location: object) -> bool:
    return isinstance(location, str) and location.startswith(MODELS_PREFIX)


@dataclass(frozen=True)
class ModelVersionRef:
    """A registered version, resolved: `uri` pins the version (`models:/NAME/VERSION`) whatever alias named it."""

    name: str
    version: str
    run_id: str | None
    tags: dict

    @property
    def uri(self) -> str:
        return f"{MODELS_PREFIX}{self.name}/{self.version}"

    @property
    def step(self) -> int | None:
        return int(self.tags[STEP_TAG]) if STEP_TAG in self.tags else None


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """`models:/NAME/VERSION` -> (NAME, VERSION, None); `models:/NAME@ALIAS` -> (NAME, None, ALIAS); `latest` is a version."""
    body = uri[len(MODELS_PREFIX) :] if is_model_uri(uri) else ""
    if "@" in body and "/" not in body:
        name, _, alias = body.partition("@")
        if name and alias:
            return name, None, alias
    elif body.count("/") == 1:
        name, _, version = body.partition("/")
        if name and (version.isdigit() or version == "latest"):
            return name, version, None
    raise ValueError(
        f"`checkpoint` {uri!r} is not a registered-model URI; expected models:/NAME/VERSION, models:/NAME/latest or models:/NAME@ALIAS."
    )


def _client(tracking_uri: str | None, what: str = "A models:/ checkpoint"):
    import mlflow

    if not tracking_uri:
        raise ValueError(
            f"{what} is read from MLflow's Model Registry: give the tracking server "
            "(--mlflow-tracking-uri, `mlflow_tracking_uri`, or MLFLOW_TRACKING_URI)."
        )
    return mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def resolve(uri: str, tracking_uri: str | None) -> ModelVersionRef:
    """The version a `models:/` URI names now (an alias or `latest` is read once, here)."""
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_model_uri(uri)
    client = _client(tracking_uri, f"`checkpoint` {uri!r}")
    try:
        if alias is not None:
            found = client.get_model_version_by_alias(name, alias)
        elif version == "latest":
            versions = client.search_model_versions(f"name = '{_escape(name)}'")
            if not versions:
                raise ValueError(f"`checkpoint` {uri!r}: registered model {name!r} has no versions at {tracking_uri}.")
            found = max(versions, key=lambda v: int(v.version))
        else:
            found = client.get_model_version(name, version)
    except MlflowException as error:
        if not _not_found(error):
            raise
        raise ValueError(f"`checkpoint` {uri!r}: not found in the Model Registry at {tracking_uri} ({error.message}).") from None
    return ModelVersionRef(name=name, version=str(found.version), run_id=found.run_id, tags=dict(found.tags))


# What MLflow answers for a model, version or alias that does not exist (a server that cannot be reached is another error).
_NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


def _not_found(error) -> bool:
    return getattr(error, "error_code", None) in _NOT_FOUND


def _escape(text: str) -> str:
    return text.replace("'", "\\'")


def download_checkpoint(uri: str, tracking_uri: str | None, destination: str | Path | None = None) -> Path:
    """A local checkpoint directory holding the version's artifacts (a fresh temporary folder by default).

    Read through a client bound to `tracking_uri`, never MLflow's process-wide URIs: a Ray worker
    inherits whatever environment its node started with.
    """
    import mlflow

    ref = resolve(uri, tracking_uri)
    target = Path(destination) if destination is not None else Path(tempfile.mkdtemp(prefix=f"videomaker-{ref.name}-v{ref.version}-"))
    target.mkdir(parents=True, exist_ok=True)
    client = _client(tracking_uri, f"`checkpoint` {uri!r}")
    source = client.get_model_version_download_uri(ref.name, ref.version)
    logger.info("Downloading %s (%s, from %s) into %s", ref.uri, uri, source, target)
    if source.startswith("runs:/"):  # what `register_checkpoint` writes
        run_id, _, path = source[len("runs:/") :].partition("/")
        return Path(client.download_artifacts(run_id, path, str(target)))
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(target), tracking_uri=tracking_uri))


def register_checkpoint(
    tracking_uri: str,
    name: str,
    *,
    directory: str | Path,
    run_id: str,
    step: int,
    preset: str,
    switches: dict,
    run_name: str,
    checkpoint_name: str,
) -> ModelVersionRef:
    """Log a checkpoint directory's weights as run artifacts and register them as a new version of `name`.

    A checkpoint already registered from this run at this step (a resumed run writing it again) is
    returned as it is, so a resume never makes duplicate versions.
    """
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if not _not_found(error):
            raise
        client.create_registered_model(name, description="VideoMaker checkpoints registered by `videomaker train`.")
    for existing in client.search_model_versions(f"name = '{_escape(name)}' and run_id = '{run_id}'"):
        if existing.tags.get(STEP_TAG) == str(step):
            return ModelVersionRef(name, str(existing.version), existing.run_id, dict(existing.tags))
    directory = Path(directory)
    artifact_path = f"checkpoints/{checkpoint_name}"
    has_ema = (directory / "ema" / "videomaker.json").is_file()
    for folder, target in ((directory, artifact_path), (directory / "ema", f"{artifact_path}/ema")):
        if folder == directory / "ema" and not has_ema:
            continue
        for file_name in CHECKPOINT_FILES:
            if (folder / file_name).is_file():
                client.log_artifact(run_id, str(folder / file_name), artifact_path=target)
    tags = {
        PRESET_TAG: preset,
        SWITCHES_TAG: json.dumps(switches, sort_keys=True),
        STEP_TAG: str(step),
        RUN_NAME_TAG: run_name,
        CHECKPOINT_NAME_TAG: checkpoint_name,
        EMA_TAG: str(has_ema).lower(),
    }
    description = f"{checkpoint_name} of training run {run_name} (preset {preset}, step {step})" + (
        "; EMA weights in ema/" if has_ema else ""
    )
    version = client.create_model_version(name, source=f"runs:/{run_id}/{artifact_path}", run_id=run_id, tags=tags, description=description)
    logger.info("Registered %s as %s version %s", checkpoint_name, name, version.version)
    return ModelVersionRef(name, str(version.version), run_id, tags)


def registered_lineage(checkpoint: str | None, tracking_uri: str | None) -> dict[str, str]:
    """Tags naming the registered version an evaluation ran and the training run and step it came from; {} for other weights."""
    if not is_model_uri(checkpoint):
        return {}
    from pipelines.tracking import CHECKPOINT_STEP_TAG, TRAINING_RUN_TAG

    ref = resolve(checkpoint, tracking_uri)
    tags = {MODEL_NAME_TAG: ref.name, MODEL_VERSION_TAG: ref.version}
    if ref.run_id:
        tags[TRAINING_RUN_TAG] = ref.run_id
    if ref.step is not None:
        tags[CHECKPOINT_STEP_TAG] = str(ref.step)
    return tags


def find_version_evaluation(
    ref: ModelVersionRef, tracking_uri: str, experiment: str | None = None, *, accept: Callable[[Run], bool] | None = None
) -> Run | None:
    """The newest evaluation run of a registered version (tagged by `registered_lineage`) that `accept(run)`
    (default: any), or None."""
    from pipelines.tracking import JOB_TAG

    client = _client(tracking_uri)
    if experiment is not None:
        found = client.get_experiment_by_name(experiment)
        experiment_ids = [found.experiment_id] if found is not None else []
    else:
        experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return None
    version = f"tags.`{MODEL_NAME_TAG}` = '{_escape(ref.name)}' and tags.`{MODEL_VERSION_TAG}` = '{ref.version}'"
    runs = client.search_runs(
        experiment_ids,
        f"tags.`{JOB_TAG}` = 'evaluate' and {version}",
        order_by=["attributes.start_time DESC"],
        max_results=1 if accept is None else 100,
    )
    return next((run for run in runs if accept is None or accept(run)), None)


def aliased(name: str, alias: str, tracking_uri: str) -> ModelVersionRef | None:
    """The version `alias` points to, or None when the model has no such alias."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        model = client.get_registered_model(name)
    except MlflowException as error:
        if not _not_found(error):
            raise
        raise ValueError(f"No registered model {name!r} at {tracking_uri}; train with `tracking.registered_model={name}`.") from None
    version = model.aliases.get(alias)
    return resolve(f"{MODELS_PREFIX}{name}/{version}", tracking_uri) if version is not None else None


def aliased_or_newest(name: str, alias: str, tracking_uri: str) -> ModelVersionRef:
    """The version `alias` points to, else the model's newest version."""
    return aliased(name, alias, tracking_uri) or resolve(f"{MODELS_PREFIX}{name}/latest", tracking_uri)


def delete_alias(ref: ModelVersionRef, alias: str, tracking_uri: str) -> None:
    _client(tracking_uri).delete_registered_model_alias(ref.name, alias)
    logger.info("%s@%s removed (it named version %s)", ref.name, alias, ref.version)


def set_alias(ref: ModelVersionRef, alias: str, tracking_uri: str) -> None:
    _client(tracking_uri).set_registered_model_alias(ref.name, alias, ref.version)
    logger.info("%s@%s -> version %s", ref.name, alias, ref.version)


def record_verdict(ref: ModelVersionRef, tracking_uri: str, tags: dict[str, str | None]) -> None:
    """Tags on the version (a gate's verdict): what a user sees on the version's page in the UI."""
    client = _client(tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(ref.name, ref.version, key, "" if value is None else str(value))
