"""Benchmark how long a Ray worker takes to import its libraries, with and without installed bytecode.

Every Ray worker process (each task worker, each actor of a pool) imports Ray Data and its stage's
libraries when it starts. uv installs packages without `.pyc` files unless told to
(`uv sync --compile-bytecode`); where bytecode is not written back (read-only images,
PYTHONDONTWRITEBYTECODE=1) every process start then compiles those modules from source again.

In one run, alternating, a fresh interpreter imports what a worker imports:
1. installed: reading the `.pyc` files the install wrote (if it wrote any, see the first line);
2. from source: the same with PYTHONPYCACHEPREFIX pointed at an empty directory, which hides them.
Both run with PYTHONDONTWRITEBYTECODE=1, so neither writes bytecode and each start is a cold one.

    uv run python bench/startup.py
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

WORKERS = {
    "preprocess actor (Ray Data, detect + segment stages)": (
        "import ray.data, pipelines.preprocess.stages.detect, pipelines.preprocess.stages.segment"
    ),
    "training / evaluation worker (Ray Train, torch, diffusers)": "import ray.train.torch, torch, diffusers",
}


def installed_bytecode(module: str = "ray.data") -> bool:
    origin = importlib.util.find_spec(module).origin
    return Path(importlib.util.cache_from_source(origin)).exists()


def cold_import(code: str, env: dict) -> tuple[float, float]:
    """(seconds, CPU-seconds) of a fresh interpreter running `code`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="Cold starts per worker kind and mode; medians are reported.")
    args = parser.parse_args()

    print(f"installed bytecode for ray.data: {'yes' if installed_bytecode() else 'no (uv sync --locked --compile-bytecode)'}")
    base = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    base.pop("PYTHONPYCACHEPREFIX", None)
    with tempfile.TemporaryDirectory() as empty:
        modes = {"installed": base, "from source": {**base, "PYTHONPYCACHEPREFIX": empty}}
        print(f"{'worker imports':60s}{'installed s / CPU-s':>22s}{'from source s / CPU-s':>24s}{'CPU ratio':>11s}")
        for label, code in WORKERS.items():
            times = {mode: [] for mode in modes}
            for _ in range(args.repeats):
                for mode, env in modes.items():  # alternating: the machine's drift hits both alike
                    times[mode].append(cold_import(code, env))
            (fast_s, fast_cpu), (slow_s, slow_cpu) = (
                (statistics.median(t for t, _ in runs), statistics.median(c for _, c in runs)) for runs in times.values()
            )
            print(f"{label:60s}{fast_s:>11.2f} / {fast_cpu:<8.2f}{slow_s:>13.2f} / {slow_cpu:<8.2f}{slow_cpu / fast_cpu:>9.2f}x")


if __name__ == "__main__":
    main()
