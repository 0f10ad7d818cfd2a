"""`videomaker synth-corpus`: synthetic test videos with true masks, broken files and a manifest, no downloads."""

from __future__ import annotations

import argparse


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth-corpus",
        help="Make a synthetic video corpus (real photos moving over textures) for preprocessing tests and demos.",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--output-dir", required=True, help="Where the videos, masks, manifest.csv and expected.json go.")
    parser.add_argument("--faces", type=non_negative_int, default=8, help="Videos of a person's head (astronaut photo).")
    parser.add_argument("--objects", type=non_negative_int, default=6, help="Videos alternating a cat and a coffee cup.")
    parser.add_argument("--no-broken", action="store_true", help="Skip the broken files (truncated, empty, audio-only, ...).")
    parser.add_argument("--frames", type=int, default=48, help="Frames per good video.")
    parser.add_argument("--seed", type=int, default=0, help="The same seed renders the same frames.")
    parser.add_argument(
        "--multi-shot",
        type=non_negative_int,
        default=0,
        help="Videos of two or three shots with hard cuts between scenes (true cuts in shots.json).",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipelines.preprocess.synthetic import BROKEN_REASONS, make_corpus

    total = args.faces + args.objects + args.multi_shot + (0 if args.no_broken else len(BROKEN_REASONS))
    with tqdm(total=total, unit="video", desc="synth-corpus") as progress:
        info = make_corpus(
            args.output_dir,
            num_faces=args.faces,
            num_objects=args.objects,
            broken=not args.no_broken,
            frames=args.frames,
            seed=args.seed,
            multi_shot=args.multi_shot,
            on_row=lambda source_id: progress.update(),
        )
    print(info.manifest_path)
    return 0
