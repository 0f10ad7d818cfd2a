"""`videomaker demo`: the whole product in one command, as Ray jobs, on this machine.

Starts a Ray head on 127.0.0.1 and an MLflow server (sqlite) on loopback unless --ray-address or
--mlflow-tracking-uri name running ones, makes a synthetic video corpus, then submits through the
Ray Jobs API, with this repository as working_dir:

    preprocess -> train (a few steps) -> evaluate the checkpoint -> compare with the paper's numbers

streaming each job's logs, and stops only the services it started. Everything runs offline: the
tiny preset and random-initialised metric models, so the numbers only show that the chain works.
Paired deltas between runs: evaluate another checkpoint and `videomaker compare demo OTHER`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the services and Ray are imported when the demo runs, not by `--help`
    from ray.job_submission import JobSubmissionClient

    from jobs.local_services import LocalMlflowServer

RUN_NAME = "demo"
REGISTERED_MODEL = "videomaker-demo"  # the train job registers its final checkpoint as a version of it
JOBS = ("preprocess", "train", "evaluate", "compare")
SERVICE_LABELS = {"ray-head": "a Ray head", "mlflow-server": "an MLflow server (sqlite)"}
EVAL_EXPERIMENT = "videomaker-eval"
# The corpus: 3 videos of a person, 2 of objects (a cat, a cup) and the broken files.
CORPUS = {"num_faces": 3, "num_objects": 2, "frames": 60, "size": (128, 96)}
# Benchmark subjects taken from the curated dataset: (set, class, subject class in the dataset).
BENCHMARK_SUBJECTS = (("non_celebrity", "person", "person"), ("object", "cat", "cat"))


@dataclass
class DemoResult:
    """Where everything went; also written to `<output_dir>/demo.json`."""

    mlflow_tracking_uri: str
    ray_address: str
    dataset: str
    samples: int
    quarantined: int
    checkpoint: str
    registered: str  # models:/videomaker-demo/VERSION: the same weights from the Model Registry
    evaluation: str
    comparison: str
    runs_table: str | None  # the evaluation experiment's runs table in the MLflow UI
    job_ids: dict[str, str]
    wall_s: float


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="Run preprocess -> train -> evaluate -> compare as Ray jobs on this machine.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", default="outputs/demo", help="Where corpus, dataset, checkpoints, videos and reports go.")
    parser.add_argument("--ray-address", help="Jobs API of a running cluster (http://HOST:8265); default: start a local head.")
    parser.add_argument("--mlflow-tracking-uri", help="A running MLflow server; default: start one on loopback.")
    parser.add_argument("--train-steps", type=int, default=2, help="Training steps of the tiny preset.")
    parser.add_argument("--num-cpus", type=int, help="CPUs of the local Ray head (default: all).")


def run(args: argparse.Namespace) -> int:
    from jobs.submission import JobFailed

    if args.train_steps < 1:
        raise ValueError(f"--train-steps must be >= 1, got {args.train_steps}.")
    try:
        run_demo(
            args.output_dir,
            ray_address=args.ray_address,
            mlflow_tracking_uri=args.mlflow_tracking_uri,
            train_steps=args.train_steps,
            num_cpus=args.num_cpus,
        )
    except JobFailed as error:
        print(f"videomaker demo: {error}", file=sys.stderr)
        return 1
    return 0


def run_demo(
    output_dir: str | Path,
    *,
    ray_address: str | None = None,
    mlflow_tracking_uri: str | None = None,
    train_steps: int = 2,
    num_cpus: int | None = None,
    out: TextIO = sys.stdout,
) -> DemoResult:
    """Run the chain; services this call starts are stopped when it returns or fails."""
    from jobs.local_services import LocalMlflowServer, LocalRayHead
    from jobs.submission import jobs_api_client

    started = time.perf_counter()
    output = Path(output_dir).expanduser().resolve()
    output.mkdir(parents=True, exist_ok=True)
    with ExitStack() as services:
        head = LocalRayHead(output / "logs", num_cpus=num_cpus) if ray_address is None else None
        mlflow_server = LocalMlflowServer(output / "mlflow") if mlflow_tracking_uri is None else None
        started_here = [s for s in (head, mlflow_server) if s is not None]
        if started_here:
            _say(out, "starting " + " and ".join(SERVICE_LABELS[s.name] for s in started_here) + " on 127.0.0.1")
        for service in started_here:  # side by side: both spend their start-up importing
            service.launch()
            services.callback(service.stop)
        for service in started_here:
            service.wait_until_ready()
        client = head.client() if head else jobs_api_client(ray_address)
        ray_address = head.address if head else ray_address
        mlflow_tracking_uri = mlflow_server.address if mlflow_server else mlflow_tracking_uri
        chain = DemoChain(output, client, mlflow_tracking_uri, out)
        result = chain.run(train_steps, ray_address)
        result.wall_s = round(time.perf_counter() - started, 1)
        (output / "demo.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
        _report(result, mlflow_server, out)
    return result


class DemoChain:
    """The jobs and the local glue between them (corpus, benchmark, metric models)."""

    def __init__(self, output: Path, client: JobSubmissionClient, mlflow_tracking_uri: str, out: TextIO) -> None:
        self.output = output
        self.client = client
        self.mlflow = mlflow_tracking_uri
        self.out = out
        self.job_ids: dict[str, str] = {}

    def submit(self, label: str, *command: str) -> None:
        from jobs.submission import submit_and_stream

        _say(self.out, f"job {len(self.job_ids) + 1}/{len(JOBS)}: {label}")
        job = submit_and_stream(self.client, shlex.join(["python", "-m", *command]), env_vars={"HF_HUB_OFFLINE": "1"}, out=self.out)
        self.job_ids[label] = job.job_id

    def run(self, train_steps: int, ray_address: str) -> DemoResult:
        import mlflow

        from pipelines.evaluation.nightly import newest_checkpoint
        from pipelines.preprocess.synthetic import make_corpus
        from pipelines.registry import resolve
        from pipelines.tracking import runs_table_url

        _say(self.out, "making the synthetic corpus")
        corpus = make_corpus(self.output / "corpus", **CORPUS)
        dataset = self.output / "dataset"
        self.submit(
            "preprocess",
            "jobs.preprocess",
            "--config",
            "jobs/configs/preprocess_demo.yaml",
            "--input",
            str(corpus.manifest_path),
            "--output-dir",
            str(dataset),
            "--mlflow-tracking-uri",
            self.mlflow,
            "--set",
            "clips.size=64",
            "--no-progress",
        )
        runs = self.output / "runs"
        self.submit(
            "train",
            "jobs.train",
            "--config",
            "jobs/configs/train_tiny.yaml",
            "--dataset",
            str(dataset),
            "--storage-path",
            str(runs),
            "--run-name",
            RUN_NAME,
            "--mlflow-tracking-uri",
            self.mlflow,
            "--set",
            f"max_steps={train_steps}",
            "--set",
            f"tracking.registered_model={REGISTERED_MODEL}",  # the final checkpoint as a Model Registry version
            "--set",
            "tracking.register_checkpoints=final",
        )
        checkpoint = newest_checkpoint(runs / RUN_NAME)
        registered = resolve(f"models:/{REGISTERED_MODEL}/latest", self.mlflow).uri

        benchmark = write_benchmark_from_dataset(dataset, self.output / "benchmark")
        evaluation = self.output / "eval" / "trained"
        self.submit(
            "evaluate",
            "jobs.evaluate",
            "--config",
            "jobs/configs/eval_demo.yaml",
            "--benchmark",
            str(benchmark),
            "--checkpoint",
            str(checkpoint),
            "--output-dir",
            str(evaluation),
            "--run-name",
            RUN_NAME,
            "--mlflow-tracking-uri",
            self.mlflow,
            "--no-progress",
            *self.metric_models(),
        )
        comparison = self.output / "comparison"
        self.submit(
            "compare",
            "jobs.compare",
            RUN_NAME,
            "--mlflow-tracking-uri",
            self.mlflow,
            "--experiment",
            EVAL_EXPERIMENT,
            "--output-dir",
            str(comparison),
        )

        samples, quarantined = _count_rows(dataset / "data"), _count_rows(dataset / "quarantine")
        return DemoResult(
            self.mlflow,
            ray_address,
            str(dataset / "data"),
            samples,
            quarantined,
            str(checkpoint),
            registered,
            str(evaluation),
            str(comparison / "comparison.txt"),
            runs_table_url(self.mlflow, mlflow.MlflowClient(self.mlflow).get_experiment_by_name(EVAL_EXPERIMENT).experiment_id),
            self.job_ids,
            0.0,
        )

    def metric_models(self) -> list[str]:
        """Random-initialised CLIP and DINO (no downloads) as `--set` overrides of the evaluation config."""
        from metrics.backends.random_init import save_random_metric_models

        backends = save_random_metric_models(self.output / "metric-models")
        return [arg for role in ("clip", "dino") for arg in ("--set", f"backends.{role}={json.dumps(asdict(getattr(backends, role)))}")]


def write_benchmark_from_dataset(dataset: Path, directory: Path) -> Path:
    """A benchmark manifest whose references are curated references: one subject per set the demo scores."""
    import pyarrow.dataset as pads

    table = (
        pads.dataset(dataset / "data", format="parquet")
        .to_table(columns=["sample_id", "subject_class", "reference_png"])
        .sort_by("sample_id")
    )
    directory.mkdir(parents=True, exist_ok=True)
    lines = ["subject_id,set,class,reference"]
    for set_name, class_name, subject_class in BENCHMARK_SUBJECTS:
        rows = [r for r in table.to_pylist() if r["subject_class"] == subject_class]
        if not rows:
            raise ValueError(f"`dataset` {str(dataset)!r} has no {subject_class!r} sample to take a reference from.")
        reference = directory / f"{class_name}.png"
        reference.write_bytes(rows[0]["reference_png"])
        lines.append(f"{class_name}-{rows[0]['sample_id'][:8]},{set_name},{class_name},{reference.name}")
    (directory / "benchmark.csv").write_text("\n".join(lines) + "\n")
    return directory / "benchmark.csv"


def _count_rows(path: Path) -> int:
    import pyarrow.dataset as pads

    return pads.dataset(path, format="parquet").count_rows() if path.exists() else 0


def _say(out: TextIO, message: str) -> None:
    print(f"\n=== videomaker demo: {message}", file=out, flush=True)


def _report(result: DemoResult, mlflow_server: LocalMlflowServer | None, out: TextIO) -> None:
    comparison = Path(result.comparison)
    print(f"\n{comparison.read_text()}" if comparison.exists() else "", file=out)
    lines = [
        f"MLflow:      {result.mlflow_tracking_uri} (experiments videomaker-curation, videomaker-train, {EVAL_EXPERIMENT})",
        f"dataset:     {result.dataset} ({result.samples} samples; {result.quarantined} quarantined, see ../quarantine)",
        f"checkpoint:  {result.checkpoint}",
        f"registered:  {result.registered} (generate/evaluate/nightly/compare take this URI)",
        f"evaluation:  {result.evaluation} (videos/<set>/grid.html, scores/samples.parquet)",
        f"comparison:  {result.comparison} (.json, .png beside it)",
        *([f"runs table:  {result.runs_table}"] if result.runs_table else []),
        f"took {result.wall_s:.0f} s",
    ]
    if mlflow_server is not None:
        lines.append(f"The MLflow server stops now; browse the runs again with:\n  {mlflow_server.reopen_command()}")
    print("\n".join(lines), file=out, flush=True)


def main(argv: list[str] | None = None) -> int:
    from jobs.entry import module_main

    return module_main("jobs.demo", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
