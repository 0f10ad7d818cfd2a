"""The `videomaker` command: one subcommand per job; logging and exit codes as `jobs.entry` sets them."""

from __future__ import annotations

import argparse
import sys

from jobs import compare, demo, evaluate, generate, models, nightly, preprocess, presets, score, synth_corpus, train
from jobs.entry import add_log_level_argument, execute

SUBCOMMANDS = {
    "generate": generate,
    "presets": presets,
    "synth-corpus": synth_corpus,
    "preprocess": preprocess,
    "score": score,
    "train": train,
    "evaluate": evaluate,
    "compare": compare,
    "nightly": nightly,
    "models": models,
    "demo": demo,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="videomaker",
        description="VideoMaker: zero-shot customized video generation on AnimateDiff, at cluster scale.",
    )
    add_log_level_argument(parser)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        module.add_parser(subparsers)
    for subparser in subparsers.choices.values():  # also after the subcommand, as `python -m jobs.X` takes it
        subparser.add_argument(
            "--log-level",
            default=argparse.SUPPRESS,
            choices=["DEBUG", "INFO", "WARNING", "ERROR"],
            help="Logging of the job and its libraries (default INFO).",
        )
    args = parser.parse_args(argv)
    return execute(f"videomaker {args.command}", args.run, args)


if __name__ == "__main__":
    sys.exit(main())
