"""`videomaker score`: the six VideoMaker metrics of a directory of generated videos.

Videos from any method score identically: list them in a manifest (CSV, JSONL or Parquet) with
columns video, subject_id, prompt, reference and optional set, subject_class, method, seed.
Writes records.parquet/.csv (one row per video) and aggregates.json/.csv (per method and set).

Submit to a cluster:  ray job submit --working-dir . -- python -m jobs.score --config CONFIG.yaml
"""

from __future__ import annotations

import argparse
import sys

from jobs.config import add_config_arguments, add_models_dir_argument
from jobs.entry import add_allow_failures_argument, failures_exit_code
from metrics.aggregate import METRIC_LABELS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "score",
        help="Score generated videos with the six metrics.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(
        parser, "ScoringConfig (pipelines/scoring/config.py)", set_example="--set backends.flow.name=opencv --set backends.face=null"
    )
    parser.add_argument("--manifest", help="Manifest of the videos to score; overrides the config.")
    parser.add_argument("--videos", help="Directory that relative video paths are read from; overrides the config.")
    parser.add_argument("--output-dir", help="Where the tables go; overrides the config.")
    parser.add_argument(
        "--face-protocol",
        choices=("paper", "corrected"),
        help="Face Sim as the author computed it (paper) or corrected (BGR, largest face); overrides the config.",
    )
    parser.add_argument("--mlflow-tracking-uri", help="Log a run there (sqlite:///mlflow.db or http://HOST:PORT); overrides the config.")
    parser.add_argument("--run-name", help="Name of the MLflow run; overrides the config.")
    add_models_dir_argument(parser)
    add_allow_failures_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")


def format_table(aggregates: list[dict]) -> str:
    """A paper-style text table: one line per (method, set), N, the face-detection rate and the Face Sim protocol beside."""
    from metrics.tables import render_table

    header = ["method", "set", "N", *METRIC_LABELS.values(), "faces", "protocol"]
    rows = []
    for row in aggregates:
        cells = [f"{row[key]:.4f}" if row[key] is not None else "-" for key in METRIC_LABELS]
        rate = f"{row['face_detection_rate']:.2f}" if row["face_detection_rate"] is not None else "-"
        rows.append([row["method"] or "-", row["set"], str(row["videos"]), *cells, rate, row.get("face_protocol") or "-"])
    return render_table(header, rows, text_columns=(0, 1, -1))


def run(args: argparse.Namespace) -> int:
    from jobs.config import job_config
    from pipelines.configs import write_resolved
    from pipelines.scoring.config import ScoringConfig
    from pipelines.scoring.dataflow import run_scoring

    flags = {
        "manifest": "manifest",
        "videos": "videos_dir",
        "output_dir": "output_dir",
        "face_protocol": "face_protocol",
        "mlflow_tracking_uri": "mlflow_tracking_uri",
        "run_name": "run_name",
    }
    config = job_config(ScoringConfig, args, flags)
    if config is None:  # --print-config
        return 0
    result = run_scoring(config, progress=not args.no_progress)
    write_resolved(config, config.output_dir)  # beside the tables it describes
    errors = [r for r in result.records if r["status"] == "error"]
    print(format_table(result.aggregates))
    for record in errors:
        print(f"error: {record['error']}: {record['message']}", file=sys.stderr)
    print(f"records: {config.output_dir}/records.parquet (.csv)  aggregates: {config.output_dir}/aggregates.json (.csv)")
    if config.mlflow_tracking_uri:  # after the tables are written, so a tracking failure loses no scores
        from pipelines.scoring.mlflow_logger import log_scoring

        print(f"mlflow run: {log_scoring(config, result.records, result.aggregates)}")
    return failures_exit_code(len(errors), args)


def main(argv: list[str] | None = None) -> int:
    from jobs.entry import module_main

    return module_main("jobs.score", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
