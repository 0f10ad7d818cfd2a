"""`videomaker compare`: evaluation runs side by side, with the paper's numbers and paired deltas.

The first run is the baseline: every later run gets per-metric deltas over the samples both runs
share (same subject, prompt and seed) with 95 % bootstrap confidence intervals over subjects.
Writes comparison.txt, comparison.json and comparison.png to --output-dir.

    videomaker compare baseline-run nightly-run --mlflow-tracking-uri http://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="Compare evaluation runs (table, deltas with CIs, chart).",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="Evaluation run ids, names (the newest run of a name) or registered versions (models:/NAME/VERSION, "
        "models:/NAME@champion: the version's newest evaluation).",
    )
    parser.add_argument("--mlflow-tracking-uri", required=True, help="Where the runs are, e.g. sqlite:///mlflow.db.")
    parser.add_argument("--experiment", default=None, help="Look names up in this experiment only (default: all).")
    parser.add_argument("--output-dir", default="comparison", help="Where comparison.txt/.json/.png go.")
    parser.add_argument("--no-published", action="store_true", help="Leave out the paper's reference rows.")
    parser.add_argument(
        "--ablation", action="store_true", help="Print the paper's ablation rows (Table 3, celebrity set) instead of its method comparison."
    )
    parser.add_argument("--bootstrap", type=int, default=2000, help="Bootstrap resamples for the confidence intervals.")


def run(args: argparse.Namespace) -> int:
    from pipelines.evaluation.run_deltas import compare_runs

    comparison = compare_runs(
        args.runs,
        tracking_uri=args.mlflow_tracking_uri,
        experiment=args.experiment,
        output_dir=args.output_dir,
        include_published=not args.no_published,
        ablation=args.ablation,
        n_boot=args.bootstrap,
    )
    print(comparison.text())
    print("written: " + ", ".join(comparison.files))
    return 0


def main(argv: list[str] | None = None) -> int:
    from jobs.entry import module_main

    return module_main("jobs.compare", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
