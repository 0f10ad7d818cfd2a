"""The nightly gate: evaluate a training run's newest checkpoint and compare it with a pinned baseline run.

A metric fails when it falls by more than its tolerance beyond its confidence interval (the upper
end of the 95 % CI of candidate - baseline is below -tolerance; see `metrics.deltas.regressions`).
The verdict is printed and written to the evaluation's MLflow run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from metrics.deltas import MetricDelta, Regression, regressions
from pipelines.evaluation.config import EvaluationConfig
from pipelines.evaluation.evaluate import EvaluationResult, run_evaluation
from pipelines.evaluation.run_deltas import compare_records
from pipelines.evaluation.runs import find_evaluation_run, load_samples
from pipelines.tracking import NIGHTLY_BASELINE_TAG, NIGHTLY_FAILED_TAG, NIGHTLY_VERDICT_TAG
from videomaker import storage

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

    def summary(self) -> str:
        if self.passed:
            return f"NIGHTLY PASS: {self.checkpoint} holds against baseline run {self.baseline_run_id}."
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
    if not config.mlflow_tracking_uri:
        raise ValueError("The nightly check needs `mlflow_tracking_uri`: the baseline run is read from MLflow.")
    tolerances = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    baseline_run = find_evaluation_run(
        baseline, tracking_uri=config.mlflow_tracking_uri, experiment=config.mlflow_experiment
    )  # fail fast before generating
    checkpoint = newest_checkpoint(train_run, ema=ema)
    checkpoint_name = storage.name(storage.parent(checkpoint)) if ema else storage.name(checkpoint)
    name = f"{storage.name(train_run)}-{checkpoint_name}{'-ema' if ema else ''}"
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
    _log_verdict(verdict, config.mlflow_tracking_uri)
    return verdict, result
