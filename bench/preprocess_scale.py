"""How preprocessing cost grows with corpus size: throughput, driver memory, and how steadily rows become durable.

In one run, each case in a fresh process with its own local Ray (the weight-free demo config):
- 1k, 10k and 100k manifest rows whose files are missing (quarantined at probe: pure bookkeeping
  of planning, scheduling, writing and resume state);
- 500 and 2,000 real synthetic videos (a synthetic corpus listed repeatedly under distinct
  `source_id`s; a multi-shot video among them).
Per case: sources/s and clips/s over the run (Ray already started), the driver's peak RSS
(VmRSS of the driver process alone, sampled every 20 ms; getrusage's ru_maxrss is printed too:
it also caught a spike shorter than 20 ms in some environments, see bench/RESULTS.md), time to
the first durable row, and, sampled every
second, rows durable in the output (committed parts + staging) against rows finished by the
stages (their `finished_at`). Targets, as ratios within this run:
    100k vs 1k missing: sources/s >= 0.8x, driver peak RSS <= 1.3x; first durable row <= 60 s at 100k
    2,000 vs 500 real:  clips/s >= 0.9x, driver peak RSS <= 1.2x
    2,000 real: durable(t) >= finished(t - 60 s) at every sample
The durable-over-time curve of the 2,000-video run goes to bench/preprocess_scale_curve.png.

    uv run python bench/preprocess_scale.py [--sizes-missing 1000,10000,100000] [--sizes-real 500,2000]
        [--compare-reservation]  (also the first real size with Ray Data's reservation off)
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

if TYPE_CHECKING:
    from pipelines.preprocess.synthetic import CorpusInfo

DEMO_CONFIG = _HERE.parent / "jobs" / "configs" / "preprocess_demo.yaml"


_ROWS: dict[str, int] = {}  # part and chunk names are written once: their footers are read once


def durable_rows(output_dir: Path) -> int:
    """Rows in committed parts and staging chunks, from Parquet footers."""
    import pyarrow.parquet as pq

    total = 0
    for folder in ("data", "quarantine", "_staging"):
        for path in (output_dir / folder).rglob("*.parquet"):
            if str(path) not in _ROWS:
                try:
                    _ROWS[str(path)] = pq.ParquetFile(path).metadata.num_rows
                except (OSError, ValueError):  # renamed or deleted while listed
                    continue
            total += _ROWS[str(path)]
    return total


def run_case(manifest: str, output_dir: str, reservation: bool = True) -> dict:
    """One preprocessing run in this process; returns its measurements."""
    import pyarrow.compute as pc
    import ray

    from jobs.config import load_config
    from pipelines.preprocess.config import PreprocessConfig
    from pipelines.preprocess.dataflow import run_preprocess, start_ray_for

    config = load_config(
        PreprocessConfig, str(DEMO_CONFIG), [f"input={manifest}", f"output_dir={output_dir}", "tracking.mlflow_tracking_uri=null"]
    )
    start_ray_for(config)
    ray.data.DataContext.get_current().op_resource_reservation_enabled = reservation
    finished: list[float] = []
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    start = time.time()

    def poll():
        while not stop.wait(1.0):
            samples.append((time.time() - start, durable_rows(Path(output_dir))))

    peak_kb = [0]

    def sample_rss():  # the driver's resident memory every 20 ms
        while not stop.wait(0.02):
            with open("/proc/self/status") as status:
                rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
            peak_kb[0] = max(peak_kb[0], rss)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    result = run_preprocess(
        config, progress=False, on_rows=lambda t: finished.extend(pc.subtract(t.column("finished_at"), start).to_pylist())
    )
    wall = time.time() - start
    stop.set()
    poller.join()
    samples.append((wall, durable_rows(Path(output_dir))))
    finished.sort()
    curve = [(t, d, sum(1 for f in finished if f <= t - 60.0), sum(1 for f in finished if f <= t)) for t, d in samples]
    first = next((t for t, d in samples if d > 0), None)
    return {
        "sources": result.summary["sources"],
        "clips": result.summary["this_run_by_status"].get("ok", 0),
        "rows": sum(result.summary["this_run_by_status"].values()),
        "wall_s": wall,
        "sources_per_s": result.summary["sources"] / wall,
        "clips_per_s": result.summary["this_run_by_status"].get("ok", 0) / wall,
        "peak_rss_mb": peak_kb[0] / 1024,
        "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "first_durable_s": first,
        "curve": curve,
        "parts": len(list((Path(output_dir) / "data").glob("*.parquet"))) + len(list((Path(output_dir) / "quarantine").glob("*.parquet"))),
    }


def write_missing_manifest(path: Path, n: int) -> None:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "caption", "subject_class"])
        for i in range(n):
            writer.writerow([f"missing/{i // 1000:04d}/{i:07d}.mp4", "A video that is not there.", "person"])


def write_real_manifest(path: Path, corpus: CorpusInfo, n: int) -> None:
    videos = corpus.good_videos
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "caption", "subject_class", "source_id"])
        rows = {r["source_id"]: r for r in csv.DictReader(corpus.manifest_path.open())}
        for i in range(n):
            video = videos[i % len(videos)]
            row = rows[video.stem]
            writer.writerow([str(video), row["caption"], row["subject_class"], f"copy{i:06d}/{video.stem}"])


def spawn(manifest: Path, output_dir: Path, reservation: bool = True) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--case", str(manifest), "--case-output", str(output_dir)]
    command += [] if reservation else ["--no-reservation"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"case {manifest} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def plot(curve: list[tuple[float, int, int, int]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [c[0] for c in curve]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(t, [c[3] for c in curve], label="rows finished by the stages")
    ax.plot(t, [c[1] for c in curve], label="rows durable (parts + staging)")
    ax.plot(t, [c[2] for c in curve], "--", label="rows finished 60 s earlier")
    ax.set_xlabel("seconds since start")
    ax.set_ylabel("rows")
    ax.set_title("2,000 synthetic videos, weight-free demo config")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes-missing", default="1000,10000,100000", help="Missing-file manifest sizes.")
    parser.add_argument("--sizes-real", default="500,2000", help="Real-video manifest sizes.")
    parser.add_argument(
        "--compare-reservation", action="store_true", help="Also run the first real size with Ray Data's per-operator reservation off."
    )
    parser.add_argument("--no-reservation", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--case-output", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.case_output, reservation=not args.no_reservation)))
        return 0

    from pipelines.preprocess.synthetic import make_corpus

    missing = [int(s) for s in args.sizes_missing.split(",") if s]
    real = [int(s) for s in args.sizes_real.split(",") if s]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = make_corpus(tmp / "corpus", num_faces=8, num_objects=8, broken=False, multi_shot=1, seed=0)
        for kind, sizes in (("missing", missing), ("real", real)):
            for n in sizes:
                manifest = tmp / f"{kind}-{n}.csv"
                if kind == "missing":
                    write_missing_manifest(manifest, n)
                else:
                    write_real_manifest(manifest, corpus, n)
                print(f"running {kind} n={n} ...", file=sys.stderr, flush=True)
                results[(kind, n)] = spawn(manifest, tmp / f"out-{kind}-{n}")
        if args.compare_reservation and real:
            print(f"running real n={real[0]}, reservation off ...", file=sys.stderr, flush=True)
            results[("real-no-reservation", real[0])] = spawn(tmp / f"real-{real[0]}.csv", tmp / "out-nores", reservation=False)
    print(f"== preprocess at scale, weight-free demo config; {os.cpu_count()} CPUs ==")
    print(
        f"{'case':>14} {'sources':>8} {'rows':>7} {'parts':>6} {'wall s':>8} {'sources/s':>10} {'clips/s':>8}"
        f" {'driver RSS MB':>14} {'ru_maxrss MB':>13} {'1st durable s':>14}"
    )
    for (kind, n), r in results.items():
        first = f"{r['first_durable_s']:.0f}" if r["first_durable_s"] is not None else "-"
        print(
            f"{kind + ' ' + str(n):>14} {r['sources']:>8} {r['rows']:>7} {r['parts']:>6} {r['wall_s']:>8.1f}"
            f" {r['sources_per_s']:>10.1f} {r['clips_per_s']:>8.2f} {r['peak_rss_mb']:>14.0f} {r['ru_maxrss_mb']:>13.0f}"
            f" {first:>14}"
        )
    print("== targets (ratios within this run) ==")
    if len(missing) >= 2:
        lo, hi = results[("missing", missing[0])], results[("missing", missing[-1])]
        print(
            f"missing {missing[-1]} vs {missing[0]}: sources/s {hi['sources_per_s'] / lo['sources_per_s']:.2f}x (>= 0.8),"
            f" driver RSS {hi['peak_rss_mb'] / lo['peak_rss_mb']:.2f}x (<= 1.3), first durable row at"
            f" {hi['first_durable_s']:.0f} s (<= 60)"
        )
    if len(real) >= 2:
        lo, hi = results[("real", real[0])], results[("real", real[-1])]
        print(
            f"real {real[-1]} vs {real[0]}: clips/s {hi['clips_per_s'] / lo['clips_per_s']:.2f}x (>= 0.9),"
            f" driver RSS {hi['peak_rss_mb'] / lo['peak_rss_mb']:.2f}x (<= 1.2)"
        )
        curve = hi["curve"]
        worst = min(d - lag for _, d, lag, _ in curve)
        print(f"real {real[-1]}: min over samples of durable(t) - finished(t - 60 s) = {worst} rows (>= 0)")
        if ("real-no-reservation", real[0]) in results:
            off = results[("real-no-reservation", real[0])]
            print(f"real {real[0]}, Ray Data reservation on vs off: clips/s {lo['clips_per_s'] / off['clips_per_s']:.2f}x")
        print(f"== durable rows over time, real {real[-1]} (every ~20 s) ==")
        print(f"{'t s':>6} {'finished':>9} {'durable':>8} {'finished(t-60)':>15}")
        step = max(1, len(curve) // 20)
        for t, d, lag, done in curve[::step] + [curve[-1]]:
            print(f"{t:>6.0f} {done:>9} {d:>8} {lag:>15}")
        plot(curve, _HERE / "preprocess_scale_curve.png")
        print(f"curve: {_HERE / 'preprocess_scale_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
