"""The nightly gate: evaluate a training run's newest checkpoint and compare it with a pinned baseline
run, or a registered model's `candidate` with its `champion` (and move `champion` on a pass).

A metric fails when it falls by more than its tolerance beyond its confidence interval (the upper
end of the 95 % CI of candidate - baseline is below -tolerance; see `metrics.deltas.regressions`).
The verdict is printed and written to the evaluation's MLflow run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from metrics.deltas import MetricDelta, Regression, regressions
from pipelines import registry
from pipelines.evaluation.config import EvaluationConfig
from pipelines.evaluation.evaluate import EvaluationResult, run_evaluation
from pipelines.evaluation.run_deltas import compare_records
from pipelines.evaluation.runs import find_evaluation_run, load_samples
from pipelines.registry import CANDIDATE, CHAMPION
from pipelines.tracking import (
    NIGHTLY_BASELINE_TAG,
    NIGHTLY_CHAMPION_TAG,
    NIGHTLY_FAILED_TAG,
    NIGHTLY_PROMOTED_TAG,
    NIGHTLY_RUN_TAG,
    NIGHTLY_VERDICT_TAG,
)
from videomaker import storage

if TYPE_CHECKING:
    from mlflow.entities import Run

logger = logging.getLogger(__name__)

DEFAULT_TOLERANCES = {"clip_t": 0.01, "face_sim": 0.02, "clip_i": 0.01, "dino_i": 0.01, "t_cons": 0.005, "dd": 0.05}
CHECKPOINT_RECORD = "checkpoint_manager_snapshot.json"  # Ray Train's record of registered checkpoints


def newest_checkpoint(train_run: str | Path, *, ema: bool = False) -> str:
    """The latest checkpoint Ray Train registered in `train_run` (a `storage_path/name` folder or URI).

    Ray Train's own record is trusted first, since a folder can exist before its checkpoint is
    complete; without it, the highest-numbered folder holding VideoMaker weights is taken.
    """
    from videomaker.checkpoint import METADATA_FILE

    run_dir = storage.absolute(train_run)
    if not storage.is_dir(run_dir):
        raise FileNotFoundError(f"`train_run` {run_dir!r} is not a directory; pass TrainConfig's storage_path/run_name.")
    record = storage.join(run_dir, CHECKPOINT_RECORD)
    latest = None
    if storage.exists(record):
        entry = json.loads(storage.read_text(record)).get("latest_checkpoint_result")
        latest = storage.join(run_dir, entry["checkpoint_dir_name"]) if entry else None
    if latest is None:
        found = [
            d
            for d in storage.list_dirs(run_dir)
            if storage.name(d).startswith("checkpoint_") and storage.exists(storage.join(d, METADATA_FILE))
        ]
        latest = found[-1] if found else None
    if latest is None:
        raise FileNotFoundError(f"`train_run` {run_dir!r} has no checkpoint yet.")
    if ema:
        if not storage.exists(storage.join(latest, "ema", METADATA_FILE)):
            raise FileNotFoundError(f"Checkpoint {latest!r} has no EMA weights; train with optimizer.ema_decay or drop --ema.")
        return storage.join(latest, "ema")
    return latest


@dataclass
class NightlyVerdict:
    passed: bool
    checkpoint: str
    baseline_run_id: str
    candidate_run_id: str | None
    regressions: list[Regression]
    deltas: list[MetricDelta]
    report: str
    promoted: bool = False  # `--model ... --promote`: champion moved to the checkpoint
    note: str = ""  # why a passing candidate was not promoted

    def summary(self) -> str:
        if self.passed:
            moved = f" {CHAMPION} now points to it." if self.promoted else ""
            note = f" Not promoted: {self.note}." if self.note else ""
            return f"NIGHTLY PASS: {self.checkpoint} holds against baseline run {self.baseline_run_id}.{moved}{note}"
        lines = [f"NIGHTLY FAIL: {self.checkpoint} regressed against baseline run {self.baseline_run_id}:"]
        return "\n".join(lines + [f"  {r.message}" for r in self.regressions])


def _log_verdict(verdict: NightlyVerdict, tracking_uri: str) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    run_id = verdict.candidate_run_id
    client.set_tag(run_id, NIGHTLY_VERDICT_TAG, "pass" if verdict.passed else "fail")
    client.set_tag(run_id, NIGHTLY_BASELINE_TAG, verdict.baseline_run_id)
    client.set_tag(run_id, NIGHTLY_FAILED_TAG, ",".join(f"{r.set}.{r.metric}" for r in verdict.regressions))
    client.log_metric(run_id, "nightly.regressions", len(verdict.regressions))
    client.log_text(run_id, verdict.summary() + "\n\n" + verdict.report, "nightly/verdict.txt")
    client.log_dict(
        run_id,
        {
            "passed": verdict.passed,
            "checkpoint": verdict.checkpoint,
            "regressions": [dataclasses.asdict(r) for r in verdict.regressions],
            "deltas": [dataclasses.asdict(d) for d in verdict.deltas],
        },
        "nightly/verdict.json",
    )


def _gate(
    config: EvaluationConfig, checkpoint: str, name: str, baseline_run, tolerances: dict[str, float] | None, progress: bool
) -> tuple[NightlyVerdict, EvaluationResult]:
    """Evaluate `checkpoint` into `config.output_dir/<name>` as run `nightly-<name>` and compare it with `baseline_run`."""
    baseline_sets = json.loads(baseline_run.data.params.get("sets", "[]"))
    unscored = [s for s in config.sets if s not in baseline_sets]
    if unscored:  # a set without a baseline would have no deltas, and no deltas would pass
        raise ValueError(
            f"Baseline run {baseline_run.info.run_id} ({baseline_run.info.run_name}) scored the sets {baseline_sets}, "
            f"not {unscored}: pick a baseline of the same sets, or narrow this run's `sets`."
        )
    tolerances = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    config = dataclasses.replace(
        config,
        method=dataclasses.replace(config.method, kind="videomaker", checkpoint=str(checkpoint)),
        output_dir=storage.join(config.output_dir, name),
        run_name=f"nightly-{name}",
    )
    logger.info("Nightly: evaluating %s against baseline run %s", checkpoint, baseline_run.info.run_id)
    result = run_evaluation(config, progress=progress)
    baseline_samples = load_samples(baseline_run, tracking_uri=config.mlflow_tracking_uri)
    comparison = compare_records([(baseline_run.info.run_name, baseline_samples), (config.run_name, result.records)])
    deltas = comparison.deltas[config.run_name]
    found = regressions(deltas, tolerances)
    verdict = NightlyVerdict(not found, str(checkpoint), baseline_run.info.run_id, result.run_id, found, deltas, comparison.text())
    return verdict, result


# Evaluation params that must be equal for two runs' scores to be compared: what was generated and how
# it was scored (not where it went, the pools or the device).
COMPARABLE_PARAMS = ("seeds", "sets", "prompts_per_subject", "face_protocol", "embedding_frames", "dd_frames", "dd_gif_frames")
COMPARABLE_PREFIXES = ("generation.", "backends.")
NOT_COMPARED = ("generation.device", "backends.device")


def comparable(config: EvaluationConfig) -> Callable[[Run], bool]:
    """A test of an evaluation run: finished, on this benchmark (its bytes' digest) with this config's comparable params."""
    from pipelines.tracking import content_digest, flatten_params

    expected = {
        key: value
        for key, value in flatten_params(config).items()
        if (key in COMPARABLE_PARAMS or key.startswith(COMPARABLE_PREFIXES)) and key not in NOT_COMPARED
    }
    benchmark = content_digest(storage.read_bytes(config.benchmark))

    def accept(run: Run) -> bool:
        digests = {i.dataset.digest for i in run.inputs.dataset_inputs if i.dataset.name == "benchmark"}
        params = run.data.params
        return run.info.status == "FINISHED" and benchmark in digests and all(params.get(k) == v for k, v in expected.items())

    return accept


def _needs_tracking(config: EvaluationConfig) -> None:
    if not config.mlflow_tracking_uri:
        raise ValueError("The nightly check needs `mlflow_tracking_uri`: the baseline run is read from MLflow.")


def run_nightly(
    config: EvaluationConfig,
    *,
    train_run: str | Path,
    baseline: str,
    tolerances: dict[str, float] | None = None,
    ema: bool = False,
    progress: bool = True,
) -> tuple[NightlyVerdict, EvaluationResult]:
    """Evaluate the newest checkpoint of `train_run` into `config.output_dir/<checkpoint>`, then gate it."""
    _needs_tracking(config)
    baseline_run = find_evaluation_run(
        baseline, tracking_uri=config.mlflow_tracking_uri, experiment=config.mlflow_experiment
    )  # fail fast before generating
    checkpoint = newest_checkpoint(train_run, ema=ema)
    checkpoint_name = storage.name(storage.parent(checkpoint)) if ema else storage.name(checkpoint)
    name = f"{storage.name(train_run)}-{checkpoint_name}{'-ema' if ema else ''}"
    verdict, result = _gate(config, checkpoint, name, baseline_run, tolerances, progress)
    _log_verdict(verdict, config.mlflow_tracking_uri)
    return verdict, result


def run_registry_nightly(
    config: EvaluationConfig,
    *,
    model: str,
    baseline: str | None = None,
    tolerances: dict[str, float] | None = None,
    promote: bool = False,
    allow_failures: bool = False,
    progress: bool = True,
) -> tuple[NightlyVerdict, EvaluationResult | None]:
    """Gate registered model `model`'s `candidate` (its newest version without one) against its `champion`.

    The champion's newest finished evaluation on this benchmark with this config's generation and
    metric settings is the baseline (`baseline`, a run id or name, overrides); a champion without one
    is evaluated first, with this config. With `promote`, a pass moves `champion` to the candidate
    (and drops a `candidate` alias naming it), unless items failed (`allow_failures` accepts that) or
    `champion` moved meanwhile; a fail never moves an alias. The verdict goes on the candidate's
    evaluation run and on its version. When the candidate already is the champion nothing runs (the
    result is None).
    """
    _needs_tracking(config)
    tracking = config.mlflow_tracking_uri
    candidate = registry.aliased_or_newest(model, CANDIDATE, tracking)
    champion = registry.aliased(model, CHAMPION, tracking)
    if champion is not None and champion.version == candidate.version and baseline is None:
        verdict = NightlyVerdict(True, candidate.uri, "", None, [], [], f"{candidate.uri} already is {model}@{CHAMPION}; nothing to gate.")
        return verdict, None
    if baseline is not None:
        baseline_run = find_evaluation_run(baseline, tracking_uri=tracking, experiment=config.mlflow_experiment)
    elif champion is not None:
        baseline_run = registry.find_version_evaluation(champion, tracking, config.mlflow_experiment, accept=comparable(config))
        if baseline_run is None:  # a champion set by hand, or evaluated otherwise: evaluate it with this config, once
            logger.info("Nightly: %s has no evaluation yet; evaluating it as the baseline", champion.uri)
            champion_config = dataclasses.replace(
                config,
                method=dataclasses.replace(config.method, kind="videomaker", checkpoint=champion.uri),
                output_dir=storage.join(config.output_dir, f"{model}-v{champion.version}"),
                run_name=f"{model}-v{champion.version}",
            )
            baseline_run = find_evaluation_run(run_evaluation(champion_config, progress=progress).run_id, tracking_uri=tracking)
    else:
        raise ValueError(
            f"Registered model {model!r} has no `{CHAMPION}` alias to gate {candidate.uri} against: pass --baseline RUN, or set "
            f"the alias on the version you trust (MLflow UI: the version's Aliases, or "
            f"MlflowClient().set_registered_model_alias({model!r}, {CHAMPION!r}, VERSION))."
        )
    verdict, result = _gate(config, candidate.uri, f"{model}-v{candidate.version}", baseline_run, tolerances, progress)
    if verdict.passed and promote:
        now = registry.aliased(model, CHAMPION, tracking)
        if result.errors and not allow_failures:
            verdict.note = f"{result.errors} item(s) failed (--allow-failures accepts that)"
        elif (now.version if now else None) != (champion.version if champion else None):
            verdict.note = f"{CHAMPION} moved to version {now.version if now else None} during the gate"
        else:
            registry.set_alias(candidate, CHAMPION, tracking)
            verdict.promoted = True
            named = registry.aliased(model, CANDIDATE, tracking)
            if named is not None and named.version == candidate.version:  # consumed: the next night gates the newest version
                registry.delete_alias(candidate, CANDIDATE, tracking)
    _log_verdict(verdict, tracking)
    registry.record_verdict(
        candidate,
        tracking,
        {
            NIGHTLY_VERDICT_TAG: "pass" if verdict.passed else "fail",
            NIGHTLY_RUN_TAG: verdict.candidate_run_id,
            NIGHTLY_BASELINE_TAG: verdict.baseline_run_id,
            NIGHTLY_CHAMPION_TAG: champion.version if champion is not None and baseline is None else "",
            NIGHTLY_FAILED_TAG: ",".join(f"{r.set}.{r.metric}" for r in verdict.regressions),
            NIGHTLY_PROMOTED_TAG: str(verdict.promoted).lower(),
        },
    )
    import mlflow

    mlflow.MlflowClient(tracking).set_tag(verdict.candidate_run_id, NIGHTLY_PROMOTED_TAG, str(verdict.promoted).lower())
    return verdict, result
