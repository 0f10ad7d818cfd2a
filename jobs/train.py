"""`videomaker train`: fine-tune AnimateDiff with PISA and GIRL on Ray Train.

Re-running the same command (same run_name and storage_path) resumes from the latest checkpoint.
Submit to a cluster:  ray job submit --working-dir . -- python -m jobs.train --config jobs/configs/train_paper.yaml
"""

from __future__ import annotations

import argparse
import sys

from jobs.config import add_config_arguments, add_models_dir_argument


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="Fine-tune on a preprocessed dataset with Ray Train.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(
        parser, "TrainConfig (pipelines/training/config.py)", set_example="--set max_steps=100 --set model.switches.update_motion=false"
    )
    parser.add_argument("--dataset", help="Preprocess output directory; overrides the config.")
    parser.add_argument("--storage-path", help="Checkpoint storage (local path or URI); overrides the config.")
    parser.add_argument("--run-name", help="Run name; the same name and storage path resume; overrides the config.")
    parser.add_argument("--max-steps", type=int, help="Optimizer steps; overrides the config's `max_steps`.")
    parser.add_argument("--mlflow-tracking-uri", help="e.g. sqlite:///mlflow.db; overrides `tracking.mlflow_tracking_uri`.")
    add_models_dir_argument(parser)


def run(args: argparse.Namespace) -> int:
    from jobs.config import job_config
    from pipelines.training.config import TrainConfig
    from pipelines.training.trainer import run_training

    flags = {
        "dataset": "dataset",
        "storage_path": "storage_path",
        "run_name": "run_name",
        "max_steps": "max_steps",
        "mlflow_tracking_uri": "tracking.mlflow_tracking_uri",
    }
    config = job_config(TrainConfig, args, flags)
    if config is None:  # --print-config
        return 0
    result = run_training(config)
    if result.error is not None:
        print(f"videomaker train: failed: {result.error}", file=sys.stderr)
        return 1
    print(f"metrics: {result.metrics}")
    print(f"checkpoint: {result.checkpoint.path if result.checkpoint else None}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from jobs.entry import module_main

    return module_main("jobs.train", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
