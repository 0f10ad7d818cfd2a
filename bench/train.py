"""Benchmark the training job: samples/s with 1 and 2 Ray Train workers, and time spent waiting for data.

In one run, on one preprocess dataset (synthetic corpus, tiny preset, pixels or latents): the
training job with 1 worker, then with 2, each for `--steps` steps on CPU. Figures come from the
job's own last report, which covers the last `--window` steps (start-up and the first steps
excluded): samples/s over all workers and the share of wall time the loop waited for a batch
(target: below 10 %), and the same share over the whole run, which includes the start-up of the
Ray Data stream before the first batch (seconds here, paid once per run).

    HF_HUB_OFFLINE=1 uv run python bench/train.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

MAKE_DATASET = """
from pipelines.preprocess.synthetic import make_corpus
from pipelines.preprocess.config import ClipsConfig, LatentsConfig, PreprocessConfig
from pipelines.preprocess.dataflow import run_preprocess
c = make_corpus('{root}/corpus', num_faces={n}, num_objects={n}, broken=False, frames=60, size=(128, 96), seed=0)
run_preprocess(PreprocessConfig(input=str(c.manifest_path), output_dir='{root}/ds', clips=ClipsConfig(size=64),
                                latents=LatentsConfig(encode={latents})), progress=False)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=48, help="Optimizer steps per run.")
    parser.add_argument("--window", type=int, default=8, help="Last steps the figures cover (inside one epoch by default).")
    parser.add_argument("--videos", type=int, default=12, help="Videos per class (faces, objects) in the corpus.")
    parser.add_argument("--latents", action="store_true", help="Train from pre-encoded latents instead of pixels.")
    args = parser.parse_args()
    if args.steps % args.window:
        parser.error("--steps must be a multiple of --window")

    from pipelines.training.config import (
        CheckpointConfig,
        DataConfig,
        ModelConfig,
        PrecisionConfig,
        ResourcesConfig,
        TrackingConfig,
        TrainConfig,
    )
    from pipelines.training.trainer import run_training

    with tempfile.TemporaryDirectory() as tmp:
        print("making the dataset with the preprocess job ...", flush=True)
        script = MAKE_DATASET.format(root=tmp, n=args.videos, latents=args.latents)
        subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
        rows = {}
        for workers in (1, 2):
            config = TrainConfig(
                dataset=f"{tmp}/ds",
                storage_path=f"{tmp}/runs",
                run_name=f"bench-{workers}",
                max_steps=args.steps,
                model=ModelConfig(preset="tiny"),
                data=DataConfig(use_latents=args.latents),
                precision=PrecisionConfig(mixed_precision="no", gradient_checkpointing=False),
                checkpoints=CheckpointConfig(every_steps=args.steps),
                tracking=TrackingConfig(log_every_steps=args.window),
                resources=ResourcesConfig(num_workers=workers, use_gpu=False, cpus_per_worker=0.5),
            )
            started = time.perf_counter()
            result = run_training(config)
            if result.error is not None:
                raise SystemExit(f"{workers}-worker run failed: {result.error}")
            rows[workers] = (result.metrics, time.perf_counter() - started)
            metrics = result.metrics
            print(
                f"{workers} worker(s): {metrics['samples_per_s']:.2f} samples/s, step {metrics['step_time_s'] * 1000:.0f} ms, "
                f"data wait {100 * metrics['data_wait_share']:.1f}% of step time (target < 10%), "
                f"{100 * metrics['data_wait_share_total']:.1f}% over the whole run (stream start-up included), "
                f"job wall {rows[workers][1]:.0f}s",
                flush=True,
            )
    ratio = rows[2][0]["samples_per_s"] / rows[1][0]["samples_per_s"]
    print(
        f"2 workers / 1 worker samples/s: {ratio:.2f}x; {'latents' if args.latents else 'pixels'}, tiny preset, "
        f"batch 1 per worker, last {args.window} of {args.steps} steps"
    )


if __name__ == "__main__":
    main()
