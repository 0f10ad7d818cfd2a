"""Benchmark the preprocessing job: is the Ray Data pipeline close to decode speed and better than a loop?

In one run, on synthetic corpora of N and 2N videos (weight-free backends):
1. decode-only: the same Ray Data read/probe/decode stages and nothing else;
2. pipeline: the full job (detect, segment, highlight, write);
3. sequential: the same stages called one after the other in this process, no Ray.
A Ray run pays a fixed start-up (workers, actors importing their libraries) that a real corpus of
tens of thousands of videos amortises, so rates are steady-state: N / (time(2N) - time(N)). The
start-up is reported separately. Peak memory (RSS of the driver plus every Ray process) of the
pipeline at N and 2N must not grow with the corpus, since nothing is materialised.

    HF_HUB_OFFLINE=1 uv run python bench/preprocess.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import pyarrow as pa
import ray

from pipelines.preprocess.config import PreprocessConfig
from pipelines.preprocess.dataflow import build_dataset, run_preprocess
from pipelines.preprocess.schema import WORKING_SCHEMA
from pipelines.preprocess.sources import read_sources
from pipelines.preprocess.stages.clip_sampling import ClipSamplingStage
from pipelines.preprocess.stages.decode import DecodeStage
from pipelines.preprocess.stages.detect import DetectStage
from pipelines.preprocess.stages.highlight import HighlightStage
from pipelines.preprocess.stages.probe import ProbeStage
from pipelines.preprocess.stages.segment import SegmentStage
from pipelines.preprocess.stages.validate import ValidateStage
from pipelines.preprocess.stages.write import WriteStage
from pipelines.preprocess.synthetic import make_corpus


def cluster_rss_mb() -> float:
    """RSS of this process plus every Ray process on the machine (the whole job's footprint)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if int(pid) != os.getpid() and b"ray" not in cmdline:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total / 1024


class PeakMemory:
    def __init__(self):
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, cluster_rss_mb())
            self._stop.wait(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def config_for(manifest: Path, output_dir: Path, size: int) -> PreprocessConfig:
    return PreprocessConfig(input=str(manifest), output_dir=str(output_dir), size=size)


def working_rows(config: PreprocessConfig) -> list[dict]:
    sources = read_sources(config.input, default_subject_class=config.default_subject_class)
    return [{**s, "run_id": config.run_id, "config_hash": config.config_hash(), "attempt": 1} for s in sources]


def decode_only(config: PreprocessConfig) -> float:
    rows = working_rows(config)
    table = pa.Table.from_pylist(rows, schema=WORKING_SCHEMA)
    ds = ray.data.from_arrow([table.slice(i, 1) for i in range(table.num_rows)])
    for stage in cpu_stages(config):
        ds = ds.map_batches(stage, batch_format="pyarrow", batch_size=1, num_cpus=config.decode_num_cpus)
    start = time.perf_counter()
    for _ in ds.iter_batches(batch_format="pyarrow", batch_size=None):
        pass
    return time.perf_counter() - start


def cpu_stages(config: PreprocessConfig):
    return [
        ProbeStage(supported_codecs=config.supported_codecs),
        ValidateStage(num_frames=config.num_frames, min_source_side=config.min_source_side),
        ClipSamplingStage(num_frames=config.num_frames, stride=config.stride, candidates=config.reference_candidates,
                          seed=config.seed),
        DecodeStage(size=config.size, resize_policy=config.resize_policy),
    ]


def sequential(config: PreprocessConfig) -> float:
    """The same work as a plain loop: every stage on every row, one process."""
    start = time.perf_counter()
    stages = cpu_stages(config) + [
        DetectStage(face_detector=config.face_detector, object_detector=config.object_detector,
                    human_classes=config.human_classes, head_scale=config.head_scale,
                    min_face_fraction=config.min_face_fraction),
        SegmentStage(segmenter=config.segmenter),
        HighlightStage(human_classes=config.human_classes, size=config.size),
        WriteStage(output_dir=config.output_dir),
    ]
    for row in working_rows(config):
        batch = pa.Table.from_pylist([row], schema=WORKING_SCHEMA)
        for stage in stages:
            batch = stage(batch)
    return time.perf_counter() - start


def pipeline(config: PreprocessConfig) -> tuple[float, float, int]:
    with PeakMemory() as memory:
        start = time.perf_counter()
        result = run_preprocess(config, progress=False)
        elapsed = time.perf_counter() - start
    return elapsed, memory.peak, result.statuses["ok"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=16, help="N: good videos in the smaller corpus (half faces, half objects).")
    # Sources larger than the output, as in real corpora, so decoding costs what it costs there.
    parser.add_argument("--frames", type=int, default=200, help="Frames per synthetic video (>= 121 uses the stride-8 path).")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--size", type=int, default=256, help="Output frame size.")
    args = parser.parse_args()

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    n = args.videos
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifests = {}
        for count in (2, n, 2 * n):
            print(f"making a corpus of {count} videos...", flush=True)
            manifests[count] = make_corpus(tmp / f"corpus{count}", num_faces=count // 2, num_objects=count - count // 2,
                                           broken=False, frames=args.frames, size=(args.width, args.height)).manifest_path
        print("warm-up (worker start, imports)...", flush=True)
        decode_only(config_for(manifests[2], tmp / "warm-decode", args.size))
        pipeline(config_for(manifests[2], tmp / "warm-pipe", args.size))
        decode_s, pipeline_s, peak, clips = {}, {}, {}, {}
        for count in (n, 2 * n):
            print(f"decode-only pass, {count} videos...", flush=True)
            decode_s[count] = decode_only(config_for(manifests[count], tmp / f"decode{count}", args.size))
            print(f"pipeline, {count} videos...", flush=True)
            pipeline_s[count], peak[count], clips[count] = pipeline(config_for(manifests[count], tmp / f"pipe{count}", args.size))
        print(f"sequential loop, {n} videos...", flush=True)
        sequential_s = sequential(config_for(manifests[n], tmp / "sequential", args.size))

    decode_rate = n / (decode_s[2 * n] - decode_s[n])
    pipeline_rate = (clips[2 * n] - clips[n]) / (pipeline_s[2 * n] - pipeline_s[n])
    sequential_rate = clips[n] / sequential_s
    startup = pipeline_s[n] - clips[n] / pipeline_rate
    print(f"\ncorpora: {n} and {2 * n} videos of {args.frames} frames at {args.width}x{args.height}, output {args.size}px, 2 CPUs")
    print(f"{'':26s}{'time N':>9s}{'time 2N':>9s}{'steady rate':>20s}")
    print(f"{'decode-only (Ray Data)':26s}{decode_s[n]:>8.1f}s{decode_s[2 * n]:>8.1f}s{decode_rate:>13.3f} vid/s")
    print(f"{'pipeline (Ray Data)':26s}{pipeline_s[n]:>8.1f}s{pipeline_s[2 * n]:>8.1f}s{pipeline_rate:>12.3f} clip/s")
    print(f"{'sequential loop':26s}{sequential_s:>8.1f}s{'':>9s}{sequential_rate:>12.3f} clip/s")
    print(f"pipeline start-up (fixed): {startup:.1f} s")
    print(f"pipeline time / decode-only time per video: {decode_rate / pipeline_rate:.2f}x (target <= 1.5x)")
    print(f"pipeline speed-up over the sequential loop:  {pipeline_rate / sequential_rate:.2f}x (target >= 1.6x)")
    print(f"peak RSS: {peak[n]:.0f} MB at {n} videos, {peak[2 * n]:.0f} MB at {2 * n} videos "
          f"(ratio {peak[2 * n] / peak[n]:.2f}; must not grow with the corpus)")

if __name__ == "__main__":
    main()
