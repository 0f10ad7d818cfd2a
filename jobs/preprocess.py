"""`videomaker preprocess`: Subject Highlight Preprocessing of a video corpus into Parquet on Ray Data.

Re-running the same command resumes: sources already complete are skipped.
Submit to a cluster:  ray job submit --working-dir . -- python -m jobs.preprocess --config CONFIG.yaml
"""

from __future__ import annotations

import argparse
import json
import sys

from jobs.config import add_config_arguments, add_models_dir_argument


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "preprocess",
        help="Curate a video corpus into a training dataset.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(
        parser, "PreprocessConfig (pipelines/preprocess/config.py)", set_example="--set clips.size=256 --set resources.detect.max_size=4"
    )
    parser.add_argument("--input", help="Manifest (CSV/JSONL/Parquet) or directory of videos; overrides the config.")
    parser.add_argument("--output-dir", help="Output directory; overrides the config.")
    parser.add_argument(
        "--mlflow-tracking-uri",
        help="e.g. sqlite:///mlflow.db or http://127.0.0.1:5000; overrides the config's tracking.mlflow_tracking_uri.",
    )
    add_models_dir_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")


def run(args: argparse.Namespace) -> int:
    from jobs.config import job_config
    from pipelines.configs import write_resolved
    from pipelines.preprocess.config import PreprocessConfig
    from pipelines.preprocess.dataflow import run_preprocess
    from pipelines.preprocess.reporting import log_curation_run
    from videomaker import storage

    flags = {"input": "input", "output_dir": "output_dir", "mlflow_tracking_uri": "tracking.mlflow_tracking_uri"}
    config = job_config(PreprocessConfig, args, flags)
    if config is None:  # --print-config
        return 0
    result = run_preprocess(config, progress=not args.no_progress)
    write_resolved(config, config.output_dir)  # after the run checked the directory and may write there
    summary = result.summary
    if config.tracking.mlflow_tracking_uri:
        summary["mlflow_run_id"] = log_curation_run(config, summary)
        # Saved with the dataset, so a training run on it can name the run that made it.
        storage.write_text(storage.join(config.output_dir, "summary.json"), json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("samples", "quarantined", "dataset_by_status", "clips_per_s", "wall_s")}))
    print(f"dataset: {config.output_dir}/data  quarantine: {config.output_dir}/quarantine  summary: {config.output_dir}/summary.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    from jobs.entry import module_main

    return module_main("jobs.preprocess", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
