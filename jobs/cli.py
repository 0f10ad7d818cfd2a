"""The `videomaker` command: one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys

from jobs import compare, demo, evaluate, generate, models, nightly, preprocess, presets, score, synth_corpus, train

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
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        module.add_parser(subparsers)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.run(args) or 0
    except (ValueError, FileNotFoundError, OSError) as err:
        print(f"videomaker {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
