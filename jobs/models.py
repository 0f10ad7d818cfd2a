"""`videomaker models`: stage every weight the job configs name into one directory, or verify one.

Clusters without internet read their weights from a staged directory: one folder per weight
(diffusion backbone, motion adapter, CLIP, DINO, insightface, SAM, RAFT, detector, IP-Adapter)
and a MANIFEST.json with the size and SHA-256 of every file.

  videomaker models stage /shared/models                                  # weights of jobs/configs/*.yaml
  videomaker models stage /shared/models --config jobs/configs/score_paper.yaml --list
  videomaker models stage /shared/models --source sam=/mnt/copies/sam_vit_h_4b8939.pth
  videomaker models stage /shared/models --released                      # + SugerWu/VideoMaker human/object .bin
  videomaker models verify /shared/models                                 # exit 1 on any problem

Re-staging skips weights whose files still match the manifest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="Stage the weights of the job configs for offline clusters, or verify them.",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    stage = actions.add_parser(
        "stage",
        help="Fetch the weights the configs name into DIRECTORY and write its MANIFEST.json.",
        description="Fetch every weight the configs name into DIRECTORY/<name>/ and write "
        "DIRECTORY/MANIFEST.json (sizes and SHA-256). Weights already staged with "
        "matching files are skipped.",
    )
    stage.add_argument("directory", help="The staged models directory (created if needed).")
    stage.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="Job config (YAML) or preset (JSON) whose weights to stage; repeatable. Default: every jobs/configs/*.yaml.",
    )
    stage.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="NAME=SOURCE",
        help="Stage weight NAME from SOURCE instead (a path, URL or hub id), e.g. a copy fetched by "
        "hand: --source sam=/mnt/sam_vit_h_4b8939.pth. Jobs still find it by its original source.",
    )
    stage.add_argument(
        "--released",
        action="store_true",
        help="Also stage the authors' released VideoMaker weights (hf:SugerWu/VideoMaker/human_pytorch_model.bin "
        "and object_pytorch_model.bin) as videomaker-human/ and videomaker-object/; jobs given "
        "`--checkpoint hf:SugerWu/VideoMaker/<file> --models-dir DIRECTORY` read the staged copy. A "
        "config whose method.checkpoint is an hf: URI stages that file without this flag.",
    )
    stage.add_argument("--list", action="store_true", help="Print the weights (name, kind, source) and fetch nothing.")
    stage.add_argument("--timeout-s", type=float, default=60.0, help="Network timeout per connection, in seconds.")
    stage.add_argument("--no-progress", action="store_true", help="Hide the progress bars.")
    verify = actions.add_parser(
        "verify",
        help="Check every file of DIRECTORY/MANIFEST.json (presence, size, SHA-256).",
        description="Check every file of DIRECTORY/MANIFEST.json for presence, size and SHA-256. "
        "Prints every problem and a summary; exits 1 on any problem. Files the "
        "manifest does not name are warnings.",
    )
    verify.add_argument("directory", help="A directory written by `videomaker models stage`.")
    verify.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")


def _overrides(flags: list[str]) -> dict[str, str]:
    overrides = {}
    for flag in flags:
        name, sep, value = flag.partition("=")
        if not sep or not name or not value:
            raise ValueError(f"`--source {flag}` must be NAME=SOURCE, e.g. --source sam=/mnt/sam_vit_h_4b8939.pth.")
        overrides[name] = value
    return overrides


def _stage(args: argparse.Namespace) -> int:
    from jobs.config import read_config_file
    from jobs.staging import stage
    from jobs.weight_sources import released_weights, weights_named_by, with_source_overrides

    paths = [Path(p) for p in args.config] or sorted(CONFIG_DIR.rglob("*.yaml"))  # reproduce/ included
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"`--config` {str(path)!r} is not a file.")
    named = weights_named_by([read_config_file(p) for p in paths])  # `extends` resolved
    if args.released:
        known = {source.source for source in named}
        named += [weight for weight in released_weights() if weight.source not in known]
    sources = with_source_overrides(named, _overrides(args.source))
    if args.list:
        for source in sources:
            aliases = f"  (also named {', '.join(source.aliases)})" if source.aliases else ""
            print(f"{source.name:20s} {source.kind:12s} {source.source}{aliases}")
        return 0
    manifest = stage(sources, args.directory, progress=not args.no_progress, timeout_s=args.timeout_s)
    files = sum(len(weight.files) for weight in manifest.weights)
    print(
        f"staged {_count(len(manifest.weights), 'weight')} ({_count(files, 'file')}) in {args.directory}; check with "
        f"`videomaker models verify {args.directory}`"
    )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from jobs.staging import verify

    report = verify(args.directory, progress=not args.no_progress)
    for problem in report.problems:
        print(problem)
    for warning in report.warnings:
        print(f"warning: {warning}")
    verdict = "OK" if report.ok else f"FAILED with {_count(len(report.problems), 'problem')}"
    print(
        f"{verdict}: {_count(report.files_checked, 'file')} of {_count(report.weights, 'weight')} checked in "
        f"{report.directory}, {_count(len(report.warnings), 'warning')}"
    )
    return 0 if report.ok else 1


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def run(args: argparse.Namespace) -> int:
    return {"stage": _stage, "verify": _verify}[args.action](args)


def main(argv: list[str] | None = None) -> int:
    from jobs.entry import module_main

    return module_main("jobs.models", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
