"""Benchmark the metric suite: one pass per video vs one pass per metric, as per-dimension tools do.

In one run, over the same mp4 files (16 frames at 512x512, the metrics' input, docs/method.md section 7):
1. one pass: `score_requests`, as the scoring actors run it: each video decoded once, one CLIP
   image forward per frame for CLIP-T, CLIP-I and T.Cons, reference and prompt embeddings cached,
   frames of a batch of videos through each model together;
2. per-metric passes: for each of the six metrics, every video decoded again and only that metric
   computed, references and prompts embedded again per video (VBench-style dimensions).
Models are loaded once for both (per-dimension tools also reload them; not counted here), and
both must produce the same numbers. CLIP ViT-B/32 and DINO ViT-S/16 have their real sizes with
random weights (no downloads here): their compute is the real one. The face pack is the tiny test
one (buffalo_l cannot be downloaded here), so Face Sim's share is understated in both modes.

    HF_HUB_OFFLINE=1 uv run python bench/metric_backends.py --videos 8
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# Run as `python bench/metric_backends.py`: the checkout's packages and tests/ (the tiny face pack) on the path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE.parent), str(_HERE.parent / "tests")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from metrics.backends import BackendSpec, MetricBackends, MetricBackendsConfig, load_backends  # noqa: E402
from metrics.definitions import clip_i, clip_t, dino_i, face_similarity, temporal_consistency  # noqa: E402
from metrics.dynamic_degree import judge_video, pair_score  # noqa: E402
from metrics.io import read_image, read_video  # noqa: E402
from metrics.records import ScoreRequest, score_requests  # noqa: E402
from metrics.suite import MetricSuite, largest_face_embedding  # noqa: E402
from tiny_models import save_tiny_face_pack  # noqa: E402  (tests/: the tiny face pack builder)

PROMPTS = ["A person wearing sunglasses.", "A person playing an acoustic guitar."]


def real_size_models(root: Path, flow: str) -> MetricBackendsConfig:
    """ViT-B-32 CLIP and dino-vits16-shaped DINO, random weights, saved where the loaders read them."""
    import open_clip
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    clip_file = root / "vit_b_32_random.pt"
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), clip_file)
    dino_config = ViTConfig(
        hidden_size=384, num_hidden_layers=12, num_attention_heads=6, intermediate_size=1536, image_size=224, patch_size=16
    )
    ViTModel(dino_config, add_pooling_layer=False).save_pretrained(root / "dino_vits16_random")
    if flow == "raft":
        from torchvision.models.optical_flow import raft_large

        torch.save(raft_large(weights=None).state_dict(), root / "raft_large_random.pth")
        flow_spec = BackendSpec("raft", {"weights": str(root / "raft_large_random.pth")})
    else:
        flow_spec = BackendSpec("opencv", {"method": flow})
    return MetricBackendsConfig(
        clip=BackendSpec("open_clip", {"model": "ViT-B-32", "pretrained": str(clip_file)}),
        dino=BackendSpec("transformers-dino", {"model": str(root / "dino_vits16_random")}),
        face=BackendSpec("insightface", {"model_dir": str(save_tiny_face_pack(root / "buffalo_l_tiny"))}),
        flow=flow_spec,
    )


def make_videos(root: Path, count: int, size: int) -> list[ScoreRequest]:
    """`count` panning 16-frame mp4s of a real photo with a bright 'face' square, two references."""
    import av
    from PIL import Image
    from skimage import data

    photo = np.asarray(Image.fromarray(data.astronaut()).resize((size * 2, size * 2)))
    references = []
    for r in range(2):
        reference = photo[r * 40 : r * 40 + size, :size].copy()
        reference[size // 4 : size // 2, size // 4 : size // 2] = 255
        Image.fromarray(reference).save(root / f"ref{r}.png")
        references.append(str(root / f"ref{r}.png"))
    requests = []
    for v in range(count):
        path = root / f"video{v}.mp4"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("libx264", rate=8)
            stream.height = stream.width = size
            stream.pix_fmt = "yuv420p"
            for i in range(16):
                frame = photo[v * 7 : v * 7 + size, i * (v % 4) * 4 : i * (v % 4) * 4 + size].copy()
                frame[size // 4 : size // 2, size // 4 : size // 2] = 255
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        requests.append(ScoreRequest(str(path), f"s{v % 2}", PROMPTS[v % 2], references[v % 2]))
    return requests


def one_pass(suite: MetricSuite, requests: list[ScoreRequest], batch: int) -> list[dict]:
    records = []
    for start in range(0, len(requests), batch):
        records += score_requests(suite, requests[start : start + batch])
    return records


def per_metric_passes(backends: MetricBackends, requests: list[ScoreRequest]) -> dict[str, list]:
    """Each metric in its own pass over the videos: decode, embed what it needs, nothing shared."""
    results: dict[str, list] = {name: [] for name in ("clip_t", "clip_i", "t_cons", "dino_i", "face_sim", "dd_dynamic")}
    for r in requests:
        frames = list(read_video(r.video))
        results["clip_t"].append(clip_t(backends.clip.embed_images(frames), backends.clip.embed_texts([r.prompt])[0]))
    for r in requests:
        frames = list(read_video(r.video))
        reference = backends.clip.embed_images([read_image(r.reference)])[0]
        results["clip_i"].append(clip_i(backends.clip.embed_images(frames), reference))
    for r in requests:
        results["t_cons"].append(temporal_consistency(backends.clip.embed_images(list(read_video(r.video)))))
    for r in requests:
        frames = list(read_video(r.video))
        reference = backends.dino.embed_images([read_image(r.reference)])[0]
        results["dino_i"].append(dino_i(backends.dino.embed_images(frames), reference))
    for r in requests:
        frames = read_video(r.video)
        reference = largest_face_embedding(backends.face, read_image(r.reference))
        results["face_sim"].append(face_similarity([largest_face_embedding(backends.face, f) for f in frames], reference).score)
    for r in requests:
        frames = read_video(r.video)
        scores = [pair_score(flow) for flow in backends.flow.consecutive_flows(frames)]
        results["dd_dynamic"].append(judge_video(scores, height=frames.shape[1], width=frames.shape[2], num_frames=len(frames)).dynamic)
    return results


def component_seconds(backends: MetricBackends, request: ScoreRequest) -> dict[str, float]:
    """Seconds per video of each piece of work, to show what a single pass can and cannot share."""
    frames = read_video(request.video)
    work = {
        "decode": lambda: read_video(request.video),
        "CLIP images": lambda: backends.clip.embed_images(list(frames)),
        "DINO images": lambda: backends.dino.embed_images(list(frames)),
        "faces": lambda: [largest_face_embedding(backends.face, f) for f in frames],
        "flow": lambda: backends.flow.consecutive_flows(frames),
    }
    seconds = {}
    for name, run in work.items():
        started = time.perf_counter()
        run()
        seconds[name] = time.perf_counter() - started
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=8, help="Videos scored by each mode.")
    parser.add_argument("--size", type=int, default=512, help="Frame side in pixels (as published: 512).")
    parser.add_argument("--batch", type=int, default=4, help="Videos per one-pass batch (the scorer actor's batch_size).")
    parser.add_argument(
        "--flow",
        default="dis",
        choices=["dis", "farneback", "raft"],
        help="DD backend; raft is real size with random weights (slow on CPU).",
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = real_size_models(root, args.flow)
        config.device = args.device
        backends = load_backends(config)
        requests = make_videos(root, args.videos, args.size)
        warm = make_videos(Path(tempfile.mkdtemp(dir=tmp)), 1, args.size)
        one_pass(MetricSuite(backends), warm, 1), per_metric_passes(backends, warm)  # warm-up

        timings = {}
        for mode in ("one pass", "per-metric passes", "one pass (repeat)"):
            started = time.perf_counter()
            if mode.startswith("one pass"):
                records = one_pass(MetricSuite(backends), requests, args.batch)  # fresh caches each time
            else:
                separate = per_metric_passes(backends, requests)
            timings[mode] = time.perf_counter() - started
            print(f"{mode:<20} {timings[mode]:7.1f}s  {args.videos / timings[mode]:.3f} videos/s", flush=True)

        parts = component_seconds(backends, requests[0])

    for name, values in separate.items():
        ours = [record[name] for record in records]
        assert np.allclose(np.array(ours, float), np.array(values, float), atol=1e-5), name
    one = min(timings["one pass"], timings["one pass (repeat)"])
    print(
        f"backends: CLIP ViT-B-32 and DINO ViT-S/16 real size, flow {args.flow}, tiny insightface pack; "
        f"{args.videos} videos of 16x{args.size}x{args.size}, device {args.device}, {torch.get_num_threads()} threads"
    )
    print("per video: " + ", ".join(f"{name} {sec:.2f}s" for name, sec in parts.items()))
    shared = parts["decode"] + parts["CLIP images"]
    floor = sum(parts.values())
    print(
        f"ceiling of the ratio with these costs: (one pass + 5 decodes + 2 CLIP image passes) / one pass = "
        f"{(floor + 2 * parts['CLIP images'] + 5 * parts['decode']) / floor:.2f}x (shared work {shared:.2f}s of {floor:.2f}s)"
    )
    print(f"same scores in both modes: yes; one pass is {timings['per-metric passes'] / one:.2f}x faster (target >= 2x)")


if __name__ == "__main__":
    main()
