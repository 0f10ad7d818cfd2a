"""`videomaker nightly`: evaluate the newest checkpoint and gate it against a baseline.

Two ways to name what is gated:
  --train-run DIR --baseline RUN   the newest checkpoint Ray Train wrote in DIR, against evaluation run RUN;
  --model NAME [--promote]         registered model NAME's `candidate` alias (else its newest version),
                                   against its `champion` alias's evaluation; --promote moves `champion`
                                   to the candidate when the gate passes (a failing gate never moves it).

Exits 3 when a metric falls by more than its tolerance beyond its 95 % confidence interval (the
verdict names every such metric), 0 when the gate passes, 1 when the evaluation itself failed and
2 on bad input (jobs/entry.py); the verdict is also written to the MLflow run (and the version).

    videomaker nightly --config jobs/configs/eval_paper.yaml --train-run /ckpt/videomaker-paper \\
        --baseline videomaker-paper-v1 --tolerance clip_t=0.005
    videomaker nightly --config jobs/configs/eval_paper.yaml --model videomaker-paper --promote
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "nightly",
        help="Evaluate the newest checkpoint and gate it on a baseline run.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def _tolerance(text: str) -> tuple[str, float]:
    from metrics.aggregate import METRIC_LABELS

    metric, _, value = text.partition("=")
    if metric not in METRIC_LABELS or not value:
        raise argparse.ArgumentTypeError(f"--tolerance {text!r}: expected METRIC=VALUE with METRIC in {list(METRIC_LABELS)}.")
    return metric, float(value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jobs.evaluate import add_arguments as add_evaluate_arguments

    add_evaluate_arguments(parser, with_checkpoint=False)
    # Required to run, checked in run(): `--print-config` needs neither.
    # One of --train-run / --model is required, checked in run(): `--print-config` needs neither.
    parser.add_argument("--train-run", help="Training run folder (TrainConfig storage_path/run_name): gate its newest checkpoint.")
    parser.add_argument("--model", help="Registered model: gate its `candidate` (else newest) version against `champion`.")
    parser.add_argument(
        "--baseline", help="Baseline evaluation run (id, name or models:/ URI); required with --train-run, overrides champion with --model."
    )
    parser.add_argument("--promote", action="store_true", help="With --model: move `champion` to the candidate when the gate passes.")
    parser.add_argument(
        "--tolerance",
        type=_tolerance,
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="Allowed fall of a metric beyond its CI (defaults in pipelines/evaluation/nightly.py).",
    )
    parser.add_argument("--ema", action="store_true", help="Evaluate the checkpoint's EMA weights.")


def run(args: argparse.Namespace) -> int:
    from jobs.config import job_config
    from jobs.evaluate import flags_of, report
    from pipelines.evaluation.config import EvaluationConfig
    from pipelines.evaluation.nightly import run_nightly

    config = job_config(EvaluationConfig, args, flags_of(args))
    if config is None:  # --print-config
        return 0
    if bool(args.train_run) == bool(args.model):
        raise ValueError("Give one of --train-run DIR (with --baseline RUN) or --model NAME.")
    if args.train_run and not args.baseline:
        raise ValueError("the following arguments are required: --baseline (with --train-run).")
    if args.model and args.ema:
        raise ValueError(
            "--ema gates a training folder's EMA weights (--train-run DIR --ema); a registered version's EMA weights "
            "cannot be gated yet: drop --ema."
        )
    if args.promote and not args.model:
        raise ValueError("--promote moves the `champion` alias of a registered model: use it with --model.")
    if args.model:
        from pipelines.evaluation.nightly import run_registry_nightly

        verdict, result = run_registry_nightly(
            config,
            model=args.model,
            baseline=args.baseline,
            tolerances=dict(args.tolerance),
            promote=args.promote,
            allow_failures=args.allow_failures,
            progress=not args.no_progress,
        )
    else:
        verdict, result = run_nightly(
            config,
            train_run=args.train_run,
            baseline=args.baseline,
            tolerances=dict(args.tolerance),
            ema=args.ema,
            progress=not args.no_progress,
        )
    from jobs.entry import ExitCode, failures_exit_code

    if result is None:  # the candidate already is the champion
        print(verdict.report)
        return ExitCode.OK
    report(result)
    print(verdict.report)
    print(verdict.summary())
    failed = failures_exit_code(result.errors, args)
    if not verdict.passed:  # a regression is reported as one even when some items also failed
        return ExitCode.REGRESSION
    return failed


def main(argv: list[str] | None = None) -> int:
    from jobs.entry import module_main

    return module_main("jobs.nightly", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
