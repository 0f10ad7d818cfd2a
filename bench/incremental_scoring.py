"""Benchmark incremental scoring: adding a metric to a scored set, new weights, a re-run, vs scoring from scratch.

In one run, over the same mp4 files (16 frames at 512x512) and the models of bench/metric_backends.py
(CLIP ViT-B/32 and DINO ViT-S/16 at their real sizes with random weights, the tiny face pack, OpenCV
DIS flow), each scenario as a new scorer does it (`ScoreCache.open`, `score_requests`, `flush`):
1. scratch (paper): the paper's six, empty cache;
2. re-run, nothing new: the same again on that cache;
3. add `vbench`: that cache, groups paper + vbench (I2V subject needs DINO's frame embeddings,
   temporal flickering no model), vs 4. scratch (paper + vbench) on an empty cache;
5. new CLIP weights: that cache, another CLIP (CLIP's three metrics recomputed), vs 1.
Every cached result is checked against the scratch one. Then the cost of the cache itself as it
grows: a cache of N videos' units (the values of this run's records) written as one part, its
bytes, the seconds `ScoreCache.open` takes and the memory it then holds, for several N (each
scorer opens it once).

    HF_HUB_OFFLINE=1 uv run python bench/incremental_scoring.py --videos 8

(Its name is not the `metrics` package's: run as a script, a bench module of that name would shadow the package.)
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE.parent), str(_HERE.parent / "tests"), str(_HERE)]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from metric_backends import make_videos, real_size_models  # noqa: E402  (bench/: the same models and videos)

from metrics.backends import BackendSpec, load_backend, load_backends  # noqa: E402
from metrics.records import UNIT_COLUMNS, ScoreRequest, score_requests  # noqa: E402
from metrics.score_cache import ScoreCache, _write_part  # noqa: E402
from metrics.suite import MetricSuite  # noqa: E402

COMPARED = ("clip_t", "clip_i", "t_cons", "dino_i", "face_sim", "dd_pairs_above", "temporal_flickering", "i2v_subject")


def scored(suite: MetricSuite, requests: list[ScoreRequest], folder: Path, batch: int) -> tuple[list[dict], float]:
    """Records and seconds of one scorer over `requests` with the cache in `folder` (opened, used, flushed)."""
    started = time.perf_counter()
    cache = ScoreCache.open(str(folder))
    records = []
    for start in range(0, len(requests), batch):
        records += score_requests(suite, requests[start : start + batch], cache=cache)
        cache.flush()
    return records, time.perf_counter() - started


def check_same(got: list[dict], want: list[dict], name: str) -> None:
    for metric in COMPARED:
        a = np.array([r[metric] if r[metric] is not None else np.nan for r in got], float)
        b = np.array([r[metric] if r[metric] is not None else np.nan for r in want], float)
        if not np.allclose(a, b, atol=1e-5, equal_nan=True):
            raise AssertionError(f"{name}: {metric} differs from the scratch scores")


def resident_bytes() -> int:
    """This process's resident memory (Linux's /proc/self/statm), without a dependency."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def cache_growth(records: list[dict], sizes: list[int], root: Path) -> list[tuple[int, int, float, int]]:
    """(videos, bytes, open seconds, memory held) of a one-part cache holding `sizes` videos' units like `records`'."""
    import hashlib
    import json

    rng = np.random.default_rng(0)
    template = {u: {c: records[0].get(c) for c in UNIT_COLUMNS[u]} for u in ("clip", "dino", "face", "dd")}

    def varied(value):  # every video its own floats, as real scores are (no two rows compress into one)
        if isinstance(value, float):
            return value + float(rng.normal(0, 1e-3))
        return [varied(v) for v in value] if isinstance(value, list) else value

    out = []
    for n in sizes:
        folder = root / f"cache_{n}"
        rows = [
            {
                "key": hashlib.sha256(f"{v}/{unit}".encode()).hexdigest(),
                "unit": unit,
                "values": json.dumps({c: varied(x) for c, x in columns.items()} | {"note": None}),
            }
            for v in range(n)
            for unit, columns in template.items()
        ]
        _write_part(str(folder), rows)
        size = sum(p.stat().st_size for p in folder.iterdir())
        del rows
        rss = resident_bytes()
        started = time.perf_counter()
        opened = ScoreCache.open(str(folder))
        seconds = time.perf_counter() - started
        held = resident_bytes() - rss  # what a scorer holds for it (after the read's garbage is gone)
        assert len(opened) == n * len(template)
        out.append((n, size, seconds, held))
        del opened
        shutil.rmtree(folder)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8, help="Videos in the scored set.")
    parser.add_argument("--size", type=int, default=512, help="Frame side in pixels (as published: 512).")
    parser.add_argument("--batch", type=int, default=4, help="Videos per batch (the scorer actor's batch_size).")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds of every scenario; the fastest of each is reported.")
    parser.add_argument("--cache-sizes", default="1000,10000,100000", help="Videos in the cache-growth measurement.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = real_size_models(root, "dis")
        backends = load_backends(config)
        torch.manual_seed(1)
        import open_clip

        other_clip = root / "vit_b_32_random_2.pt"
        torch.save(open_clip.create_model("ViT-B-32").state_dict(), other_clip)
        new_clip = load_backend("clip", BackendSpec("open_clip", {"model": "ViT-B-32", "pretrained": str(other_clip)}))
        (root / "videos").mkdir()
        requests = make_videos(root / "videos", args.videos, args.size)
        warm = make_videos(Path(tempfile.mkdtemp(dir=tmp)), 1, args.size)
        scored(MetricSuite(backends, groups=("vbench",)), warm, root / "warm", args.batch)  # warm-up

        seconds: dict[str, list[float]] = {}
        for round_ in range(args.rounds):
            base = root / f"r{round_}"
            paper, t = scored(MetricSuite(backends), requests, base / "paper", args.batch)
            seconds.setdefault("1. scratch (paper)", []).append(t)
            for folder in ("rerun", "add", "clip"):  # each scenario starts from the scored set's cache
                shutil.copytree(base / "paper", base / folder)
            again, t = scored(MetricSuite(backends), requests, base / "rerun", args.batch)
            seconds.setdefault("2. re-run, nothing new", []).append(t)
            added, t = scored(MetricSuite(backends, groups=("vbench",)), requests, base / "add", args.batch)
            seconds.setdefault("3. add vbench to the scored set", []).append(t)
            both, t = scored(MetricSuite(backends, groups=("vbench",)), requests, base / "both", args.batch)
            seconds.setdefault("4. scratch (paper + vbench)", []).append(t)
            retrained = dataclasses.replace(backends, clip=new_clip)
            recomputed, t = scored(MetricSuite(retrained), requests, base / "clip", args.batch)
            seconds.setdefault("5. new CLIP weights", []).append(t)
            check_same(again, paper, "re-run")
            check_same(added, both, "add vbench")
            scratch_new, _ = scored(MetricSuite(retrained), requests, base / "clip_scratch", args.batch)
            check_same(recomputed, scratch_new, "new CLIP weights")
            assert all(r["cached_units"] == "clip,dino,face,dd" or r["cached_units"] == "clip,dino,dd" for r in again)
            assert all(r["cached_units"] in ("dino,face,dd", "dino,dd") for r in recomputed)

        growth = cache_growth(paper, [int(n) for n in args.cache_sizes.split(",")], root)

    best = {name: min(values) for name, values in seconds.items()}
    print(
        f"{args.videos} mp4s of 16x{args.size}x{args.size}; CLIP ViT-B-32 and DINO ViT-S/16 real size (random weights), "
        f"DIS flow, tiny insightface pack; cpu, {torch.get_num_threads()} threads; fastest of {args.rounds} rounds; "
        f"load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(f"{'scenario':<34}{'seconds':>9}{'s/video':>9}")
    for name, value in best.items():
        print(f"{name:<34}{value:9.2f}{value / args.videos:9.3f}")
    print("ratios (lower is better; all scores equal the scratch ones, checked):")
    print(f"  add vbench / scratch (paper + vbench)   {best['3. add vbench to the scored set'] / best['4. scratch (paper + vbench)']:.3f}")
    print(f"  new CLIP weights / scratch (paper)      {best['5. new CLIP weights'] / best['1. scratch (paper)']:.3f}")
    print(f"  re-run, nothing new / scratch (paper)   {best['2. re-run, nothing new'] / best['1. scratch (paper)']:.3f}")
    print("cache growth (one part; the paper's four units per video, values like this run's):")
    print(f"{'videos':>9}{'MiB':>9}{'bytes/video':>13}{'open s':>9}{'open us/video':>15}{'RSS MiB':>9}{'RSS B/video':>13}")
    for n, size, secs, held in growth:
        print(f"{n:9d}{size / 2**20:9.1f}{size / n:13.0f}{secs:9.2f}{secs / n * 1e6:15.1f}{held / 2**20:9.1f}{held / n:13.0f}")


if __name__ == "__main__":
    main()
