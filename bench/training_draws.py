"""What keeping several windows and references per clip costs: output size and preprocessing time.

Training draws a new 16-frame window and one of the clip's references at every draw, so
preprocessing keeps a span of `clips.span_frames` frames at the clip's stride and up to
`references.per_clip` SHP references. This runs the preprocessing job (weight-free backends, one
local Ray cluster) over the same synthetic corpus with

    fixed:  clips.span_frames=16, references.per_clip=1   (one window, one reference: the old layout)
    drawn:  clips.span_frames=32, references.per_clip=4   (the default)

and prints bytes per clip (data/ Parquet), the share of frames vs references, and the wall-time
ratio, each round in the same process, alternating the order. Synthetic videos compress better
than real footage, so absolute sizes are low; the ratios are what carries over.

    uv run python bench/training_draws.py --videos 24 --size 256 --rounds 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
_HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

LAYOUTS = {"fixed": {"span_frames": 16, "per_clip": 1}, "drawn": {"span_frames": 32, "per_clip": 4}}


def measure(manifest: Path, out: Path, size: int, layout: dict) -> dict:
    import pyarrow.parquet as pq

    from pipelines.preprocess.config import ClipsConfig, PreprocessConfig, ReferencesConfig, ShotsConfig
    from pipelines.preprocess.dataflow import run_preprocess

    config = PreprocessConfig(
        input=str(manifest),
        output_dir=str(out),
        clips=ClipsConfig(size=size, span_frames=layout["span_frames"]),
        references=ReferencesConfig(per_clip=layout["per_clip"]),
        shots=ShotsConfig(detector="none"),
    )
    started = time.perf_counter()
    result = run_preprocess(config, progress=False)
    seconds = time.perf_counter() - started
    table = pq.read_table(out / "data", columns=["frames", "reference_pngs", "frame_indices"])
    clips = table.num_rows
    frame_bytes = sum(len(f) for row in table.column("frames").to_pylist() for f in row)
    reference_bytes = sum(len(r) for row in table.column("reference_pngs").to_pylist() for r in row)
    file_bytes = sum(p.stat().st_size for p in (out / "data").glob("*.parquet"))
    references = sum(len(r) for r in table.column("reference_pngs").to_pylist())
    frames = sum(len(f) for f in table.column("frame_indices").to_pylist())
    return {
        "clips": clips,
        "ok": result.statuses.get("ok", 0),
        "seconds": seconds,
        "bytes_per_clip": file_bytes / clips,
        "frame_bytes_per_clip": frame_bytes / clips,
        "reference_bytes_per_clip": reference_bytes / clips,
        "frames_per_clip": frames / clips,
        "references_per_clip": references / clips,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24, help="Synthetic face videos in the corpus.")
    parser.add_argument("--frames", type=int, default=300, help="Frames per video (300 at stride 8 hold 38 frames).")
    parser.add_argument("--size", type=int, default=256, help="Output frame size in pixels.")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds of both layouts, alternating which runs first.")
    args = parser.parse_args(argv)

    import ray

    from pipelines.preprocess.synthetic import make_corpus

    with tempfile.TemporaryDirectory(prefix="bench-draws-") as scratch:
        root = Path(scratch)
        corpus = make_corpus(
            root / "corpus",
            num_faces=args.videos,
            num_objects=0,
            broken=False,
            frames=args.frames,
            size=(args.size * 5 // 4, args.size),
            seed=0,
        )
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
        results: dict[str, list[dict]] = {name: [] for name in LAYOUTS}
        try:
            for round_index in range(args.rounds):
                order = list(LAYOUTS) if round_index % 2 == 0 else list(reversed(LAYOUTS))
                for name in order:
                    results[name].append(measure(corpus.manifest_path, root / f"{name}-{round_index}", args.size, LAYOUTS[name]))
                    print(f"round {round_index} {name}: {results[name][-1]}", file=sys.stderr)
        finally:
            ray.shutdown()
    fixed, drawn = results["fixed"][-1], results["drawn"][-1]
    time_ratio = sorted(d["seconds"] / f["seconds"] for d, f in zip(results["drawn"], results["fixed"]))
    print(f"corpus: {args.videos} synthetic face videos of {args.frames} frames, output {args.size} px, {fixed['clips']} clips")
    print("layout  frames/clip  refs/clip  bytes/clip  frame bytes  reference bytes")
    for name, r in (("fixed", fixed), ("drawn", drawn)):
        print(
            f"{name:7s} {r['frames_per_clip']:11.1f} {r['references_per_clip']:10.2f} {r['bytes_per_clip']:11.0f} "
            f"{r['frame_bytes_per_clip']:12.0f} {r['reference_bytes_per_clip']:16.0f}"
        )
    print(
        f"size ratio drawn/fixed: {drawn['bytes_per_clip'] / fixed['bytes_per_clip']:.2f}x "
        f"(frames {drawn['frame_bytes_per_clip'] / fixed['frame_bytes_per_clip']:.2f}x, "
        f"references {drawn['reference_bytes_per_clip'] / fixed['reference_bytes_per_clip']:.2f}x)"
    )
    print(f"time ratio drawn/fixed, rounds sorted: {', '.join(f'{r:.2f}x' for r in time_ratio)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
