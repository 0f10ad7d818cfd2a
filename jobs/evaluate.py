"""`videomaker evaluate`: generate a method's benchmark videos, score them, log them to MLflow.

The benchmark is a manifest of subjects (subject_id, set, class, reference) checked as a whole
before anything runs; the prompts are the paper's (docs/method.md, section 8). Re-running the same command resumes:
finished videos are kept, only missing ones are generated.

Submit to a cluster:  ray job submit --working-dir . -- python -m jobs.evaluate --config jobs/configs/eval_paper.yaml
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from jobs.config import add_config_arguments, add_models_dir_argument
from jobs.entry import add_allow_failures_argument

if TYPE_CHECKING:  # the pipeline's imports load only when the job runs
    from pipelines.evaluation.evaluate import EvaluationResult


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="Generate, score and log a benchmark evaluation.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser, *, with_checkpoint: bool = True) -> None:
    add_config_arguments(
        parser, "EvaluationConfig (pipelines/evaluation/config.py)", set_example="--set seeds=[0,1] --set method.kind=ip-adapter"
    )
    parser.add_argument("--benchmark", help="Subject manifest (CSV, JSONL or Parquet); overrides the config.")
    parser.add_argument("--output-dir", help="Videos, scores and reports; the same directory resumes; overrides the config.")
    if with_checkpoint:
        parser.add_argument(
            "--checkpoint",
            help="VideoMaker weights to evaluate; overrides method.checkpoint: a checkpoint "
            "directory, or the authors' released .bin (a file, a directory holding "
            "one, or hf:SugerWu/VideoMaker/<file>; with --models-dir its staged copy), or a registered "
            "version (models:/NAME/VERSION, models:/NAME@ALIAS; the registry is --mlflow-tracking-uri).",
        )
    parser.add_argument("--run-name", help="MLflow run name (default: the method name); overrides the config.")
    parser.add_argument("--mlflow-tracking-uri", help="e.g. sqlite:///mlflow.db or http://127.0.0.1:5000; overrides the config.")
    parser.add_argument(
        "--face-protocol",
        choices=("paper", "corrected"),
        help="Face Sim as the author computed it (paper) or corrected (BGR, largest face); overrides the config.",
    )
    add_models_dir_argument(parser)
    add_allow_failures_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bars.")


FLAGS = {
    "benchmark": "benchmark",
    "output_dir": "output_dir",
    "checkpoint": "method.checkpoint",
    "run_name": "run_name",
    "mlflow_tracking_uri": "mlflow_tracking_uri",
    "face_protocol": "face_protocol",
}


def flags_of(args: argparse.Namespace) -> dict[str, str]:
    """The shortcut flags this command has (nightly has no --checkpoint: it picks the newest)."""
    return {attribute: key for attribute, key in FLAGS.items() if hasattr(args, attribute)}


def report(result: EvaluationResult) -> None:
    """The set table, the generation counts and where everything went."""
    from jobs.score import format_table

    print(format_table(result.aggregates))
    generation = result.generation
    print(f"videos: {generation.generated} new, {generation.skipped} already done, {len(generation.failed)} failed")
    for item_id, error in generation.failed.items():
        print(f"  no video for {item_id}: {error}", file=sys.stderr)
    print(f"output: {result.output_dir} (scores/samples.parquet, videos/<set>/grid.html)")
    if result.run_id:
        print(f"mlflow run: {result.run_id}")


def run(args: argparse.Namespace) -> int:
    from jobs.config import job_config
    from pipelines.evaluation.config import EvaluationConfig
    from pipelines.evaluation.evaluate import run_evaluation

    config = job_config(EvaluationConfig, args, flags_of(args))
    if config is None:  # --print-config
        return 0
    from jobs.entry import failures_exit_code

    result = run_evaluation(config, progress=not args.no_progress)
    report(result)
    return failures_exit_code(result.errors, args)


def main(argv: list[str] | None = None) -> int:
    from jobs.entry import module_main

    return module_main("jobs.evaluate", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
