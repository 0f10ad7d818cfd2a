"""`videomaker generate`: reference image + prompt(s) -> mp4 and GIF per video, with a JSON sidecar."""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

from jobs.config import add_models_dir_argument
from videomaker.references import EXAMPLE_PREFIX, load_reference

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "generate",
        help="Generate videos of a subject from a reference image.",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--preset", default="tiny", help="Preset name (`videomaker presets list`) or saved preset directory.")
    parser.add_argument(
        "--checkpoint",
        default=None,
        help="Trained weights: a checkpoint directory of this project (switches are read from it), or "
        "the authors' released weights as a local .bin file, a directory holding one, or "
        "hf:SugerWu/VideoMaker/human_pytorch_model.bin (object_pytorch_model.bin for objects; "
        "they fit --preset paper), or a registered version: models:/NAME/VERSION, models:/NAME@ALIAS "
        "(with --mlflow-tracking-uri). See docs/inference.md.",
    )
    parser.add_argument(
        "--mlflow-tracking-uri",
        default=os.environ.get("MLFLOW_TRACKING_URI"),
        help="The Model Registry a models:/ checkpoint is read from (default: $MLFLOW_TRACKING_URI).",
    )
    add_models_dir_argument(parser)
    parser.add_argument(
        "--reference",
        required=True,
        help=f"Reference image path, or `{EXAMPLE_PREFIX}NAME` for an image bundled with scikit-image (e.g. skimage:astronaut).",
    )
    parser.add_argument("--prompt", action="append", required=True, help="Prompt; repeat for several videos.")
    parser.add_argument("--seed", type=int, action="append", help="Seed per prompt (default 0, 1, ...).")
    parser.add_argument("--subject", choices=["human", "object"], default="human", help="Picks the default negative prompt.")
    parser.add_argument("--negative-prompt", default=None, help="Overrides the subject's default negative prompt.")
    parser.add_argument("--steps", type=int, default=30, help="DDIM steps.")
    parser.add_argument("--guidance-scale", type=float, default=8.0)
    parser.add_argument("--size", type=int, default=None, help="Square output size in pixels (default: the preset's).")
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default="float32",
        help="Precision of the model (the published videos were generated in float32).",
    )
    parser.add_argument("--output-dir", default="outputs/generate", help="Where the mp4, GIF and JSON files go.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from videomaker.export import write_gif, write_mp4
    from videomaker.pipeline import NEGATIVE_PROMPT_HUMAN, NEGATIVE_PROMPT_OBJECT, VideoMakerPipeline

    seeds = args.seed or list(range(len(args.prompt)))
    if len(seeds) != len(args.prompt):
        raise ValueError(f"--seed was given {len(seeds)} times for {len(args.prompt)} prompts; give one per prompt or none.")
    reference = load_reference(args.reference)
    negative = args.negative_prompt or (NEGATIVE_PROMPT_HUMAN if args.subject == "human" else NEGATIVE_PROMPT_OBJECT)

    import torch

    checkpoint = args.checkpoint
    if checkpoint is not None and args.models_dir is not None and checkpoint.startswith("hf:"):
        from jobs.staging import resolve_weight

        checkpoint = resolve_weight(checkpoint, args.models_dir)  # the staged copy of the hub file
    registered = None
    with tempfile.TemporaryDirectory(prefix="videomaker-generate-") as scratch:
        if checkpoint is not None and checkpoint.startswith("models:/"):
            from pipelines.registry import download_checkpoint, resolve

            registered = resolve(checkpoint, args.mlflow_tracking_uri)
            checkpoint = download_checkpoint(registered.uri, args.mlflow_tracking_uri, scratch)
        logger.info("Loading preset %s", args.preset)
        pipe = VideoMakerPipeline.from_preset(args.preset, checkpoint=checkpoint, device=args.device, dtype=getattr(torch, args.dtype))
    if registered is not None:  # the sidecars name the version, not the temporary download
        pipe.checkpoint = registered.uri
    out = pipe(
        [reference] * len(args.prompt),
        args.prompt,
        seeds=seeds,
        negative_prompt=negative,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        height=args.size,
        width=args.size,
    )
    output_dir = Path(args.output_dir)
    for index, (frames, prompt, seed) in enumerate(zip(out.frames, out.prompts, out.seeds)):
        stem = output_dir / f"{index:03d}_seed{seed}"
        mp4 = write_mp4(frames, stem.with_suffix(".mp4"), fps=args.fps)
        gif = write_gif(frames, stem.with_suffix(".gif"), fps=args.fps)
        sidecar = {"prompt": prompt, "seed": seed, "reference": args.reference, "fps": args.fps, **out.provenance}
        stem.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))
        print(f"{mp4}\n{gif}")
    return 0
