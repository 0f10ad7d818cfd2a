"""Benchmark the SHP model backends: how many frames/s one actor of each model stage serves on a GPU.

Why: with `jobs/configs/preprocess_paper.yaml` the detect and segment stages run on GPU actor
pools while decoding runs on CPUs (about 0.8 CPU-s per clip at 512 px on the 2-core dev VM, see
bench/preprocess.py). Every clip needs one segmentation and at least one detection (up to 4 when
reference candidates fail), so these rates say how many decode CPUs one actor keeps up with, and
from that how large to make the `detect` and `segment` pools.

What runs: the job's own backends (`SAMSegmenter` on a checkpoint file, `GroundingDinoDetector`
on a `save_pretrained` directory) built on random weights at the real architecture sizes (SAM
ViT-B and ViT-H; Grounding DINO tiny: Swin-T, BERT-base, 900 queries, d_model 256, 6+6 layers)
and called as the stages call them, one 512x512 uint8 frame (the job's default size) per call,
float32, `segment(frame, box)` and `detect(frame, "cat")`. Latency covers the whole call:
preprocessing on the CPU, the model, post-processing, the result back on the host. The insightface
face detector is not measured: it needs the `insightface` package and buffalo_l's det_10g.onnx,
neither of which can be made here. `--smoke` swaps in tiny configurations to test this script's
code path in under a minute on a CPU; its figures mean nothing.

    HF_HUB_OFFLINE=1 python bench/shp_models.py [--device cpu] [--smoke]
"""

from __future__ import annotations

import argparse
import gc
import inspect
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

# The weights are made here and read from local paths: nothing needs the hub (the GPU machine is offline).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Run as `python bench/<name>.py`: the checkout's packages first, no bench/ module in their place.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE.parent)]

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from skimage import data  # noqa: E402

from pipelines.preprocess.backends.base import Box  # noqa: E402
from pipelines.preprocess.backends.grounding_dino import GroundingDinoDetector  # noqa: E402
from pipelines.preprocess.backends.sam import SAMSegmenter  # noqa: E402

MODELS = ("sam-vit_b", "sam-vit_h", "grounding-dino-tiny")
SIZE = 512  # clips.size of preprocess_paper.yaml
BOX = Box(48, 24, 432, 448)  # around the cat's head and chest in `frame()`
CANDIDATES = 4  # PreprocessConfig references.candidates: detections per clip when every candidate fails
SMOKE_SAM = "bench-smoke"  # sam_model_registry key of the tiny SAM registered by --smoke
# An offline WordPiece vocabulary holding the prompt's words: "cat." is [CLS] cat . [SEP], as with BERT's.
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "cat"]


def frame() -> np.ndarray:
    """skimage's chelsea (a cat), centre-cropped square and resized to SIZE, as decode's center_crop does."""
    image = data.chelsea()
    height, width = image.shape[:2]
    left = (width - height) // 2
    return np.ascontiguousarray(cv2.resize(image[:, left : left + height], (SIZE, SIZE), interpolation=cv2.INTER_AREA))


def save_sam(path: Path, model_type: str, smoke: bool) -> tuple[Path, str]:
    """A random SAM checkpoint (plain state dict, as released) and the model_type to load it as."""
    import segment_anything
    from segment_anything.build_sam import _build_sam

    if smoke:  # segment_anything's own builder (1024 px input, full prompt encoder and mask decoder), tiny encoder
        model_type = SMOKE_SAM
        segment_anything.sam_model_registry[model_type] = partial(
            _build_sam, encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1]
        )
    torch.manual_seed(0)
    torch.save(segment_anything.sam_model_registry[model_type]().state_dict(), path)
    return path, model_type


def save_grounding_dino(model_dir: Path, smoke: bool) -> Path:
    """A random Grounding DINO with grounding-dino-tiny's architecture and processor, saved with its tokenizer."""
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    if smoke:
        backbone = SwinConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=7, out_indices=[2, 3, 4])
        text = BertConfig(
            vocab_size=len(VOCAB),
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=8,
            max_position_embeddings=32,
        )
        # d_model 32: GroupNorm(32, d_model) in the input projections; 2 decoder layers: their box heads are tied.
        sizes = dict(
            d_model=32,
            encoder_layers=1,
            decoder_layers=2,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=16,
            decoder_ffn_dim=16,
            encoder_n_points=2,
            decoder_n_points=2,
            num_queries=5,
            max_text_len=16,
        )
    else:  # the architecture fields of IDEA-Research/grounding-dino-tiny's config.json (the rest are the defaults)
        backbone = SwinConfig(
            image_size=224, patch_size=4, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, out_indices=[2, 3, 4]
        )
        text = BertConfig(
            vocab_size=30522,
            hidden_size=768,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=3072,
            max_position_embeddings=512,
        )  # bert-base-uncased
        sizes = dict(
            d_model=256,
            encoder_layers=6,
            decoder_layers=6,
            encoder_attention_heads=8,
            decoder_attention_heads=8,
            encoder_ffn_dim=2048,
            decoder_ffn_dim=2048,
            encoder_n_points=4,
            decoder_n_points=4,
            num_queries=900,
            max_text_len=256,
        )
    config = GroundingDinoConfig(backbone_config=backbone, text_config=text, num_feature_levels=4, two_stage=True, **sizes)
    torch.manual_seed(0)
    model = GroundingDinoForObjectDetection(config)
    # A class logit is a decoder output (after this LayerNorm) dotted with a text feature: with random weights its
    # std is about sqrt(d_model), every score saturates at 1.0 and they all tie. Scaled down, the scores spread as a
    # trained model's do, so a threshold can keep one box (see keep_top_box); the compute is the same.
    with torch.no_grad():
        for parameter in model.model.decoder.layer_norm.parameters():
            parameter.mul_(config.d_model**-0.5)
    model.save_pretrained(model_dir)
    # The released processor's settings: a 512 px frame is resized to 800x800 before the model.
    images = GroundingDinoImageProcessor(size={"shortest_edge": 800, "longest_edge": 1333})
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(VOCAB)})
    GroundingDinoProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(model_dir)
    return model_dir


@dataclass
class Result:
    model: str
    load_s: float  # the backend's constructor: what an actor pays once at start-up
    median_ms: float
    min_ms: float
    peak_gib: float | None  # torch.cuda.max_memory_allocated: weights + activations; None on the CPU
    note: str = ""


def save_weights(name: str, tmp: Path, device: str, smoke: bool) -> Callable[[], object]:
    """Random weights for `name` saved under `tmp`, and the job's backend constructor for them."""
    if name.startswith("sam-"):
        path, model_type = save_sam(tmp / f"{name}.pth", name.removeprefix("sam-"), smoke)
        return partial(SAMSegmenter, path, model_type=model_type, device=device)
    return partial(GroundingDinoDetector, save_grounding_dino(tmp / name, smoke), device=device)


def keep_top_box(detector: GroundingDinoDetector, image: np.ndarray) -> str:
    """Set the box threshold so that one box passes, and say why.

    Post-processing costs per kept box (a host sync each), and at the default threshold most of
    the 900 queries of these random weights pass. A trained model keeps about one box on a frame
    with one cat.
    """
    default = inspect.signature(GroundingDinoDetector).parameters["box_threshold"].default
    detector.box_threshold = 0.0
    everything = detector.detect(image, "cat")
    detector.box_threshold = everything[1].score if len(everything) > 1 else 0.0  # passes: score > threshold
    kept = len(detector.detect(image, "cat"))
    passing = sum(b.score > default for b in everything)
    return (
        f"box_threshold set to {detector.box_threshold:.4f}: {kept} box(es) pass, as for a trained model on one "
        f"cat (the default {default} passes {passing} of the {len(everything)} boxes of these random weights)"
    )


def time_calls(call: Callable[[], object], warmup: int, repeats: int, cuda: bool) -> list[float]:
    """Wall seconds of each of `repeats` calls after `warmup` untimed ones."""
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(warmup):  # lazy initialisation, cuDNN/cuBLAS handles, the allocator's first blocks
        call()
    seconds = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        call()
        sync()
        seconds.append(time.perf_counter() - start)
    return seconds


def bench_model(name: str, tmp: Path, image: np.ndarray, device: str, smoke: bool, warmup: int, repeats: int) -> Result:
    cuda = device == "cuda"
    print(f"{name}: saving random weights ...", flush=True)
    load = save_weights(name, tmp, device, smoke)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    print(f"{name}: loading them as the job does ...", flush=True)
    start = time.perf_counter()
    backend = load()
    load_s = time.perf_counter() - start
    if isinstance(backend, GroundingDinoDetector):
        note = keep_top_box(backend, image)
        call = partial(backend.detect, image, "cat")
    else:
        note = ""
        call = partial(backend.segment, image, BOX)
    print(f"{name}: {warmup} warm-up and {repeats} timed calls ...", flush=True)
    seconds = time_calls(call, warmup, repeats, cuda)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    del backend, call
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()  # the next model's peak starts from nothing
    return Result(name, load_s, statistics.median(seconds) * 1e3, min(seconds) * 1e3, peak, note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS), help="subset to run (default: all)")
    parser.add_argument("--repeats", type=int, help="timed calls per model (default 20; 2 with --smoke)")
    # Ray starts an actor of num_cpus=1 (preprocess_paper.yaml) with OMP_NUM_THREADS=1: torch on one thread.
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as in a 1-CPU actor)")
    parser.add_argument("--decode-cpu-s", type=float, default=0.8, help="CPU-seconds to decode one clip (default 0.8: 512 px)")
    parser.add_argument("--smoke", action="store_true", help="tiny configurations: tests the code path, figures mean nothing")
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no GPU here; pass --device cpu")
    repeats = args.repeats or (2 if args.smoke else 20)
    warmup = 1 if args.smoke else 3
    torch.set_num_threads(args.threads)
    import transformers

    transformers.utils.logging.disable_progress_bar()  # the loaders' bars would fill the log
    machine = torch.cuda.get_device_name() if cuda else "cpu"
    sizes = "SMOKE: tiny configurations, figures mean nothing" if args.smoke else "real architecture sizes"
    print(f"SHP model backends, random weights, {sizes}; float32 as the job runs them", flush=True)
    print(
        f"device: {machine} ({args.device}); torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{args.threads} torch CPU thread(s)",
        flush=True,
    )
    image = frame()
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench_model(name, Path(tmp), image, args.device, args.smoke, warmup, repeats) for name in args.models]

    print(
        f"\n== one {SIZE}x{SIZE} frame per call (skimage chelsea, box {BOX.as_list()}); median (min) of {repeats} after {warmup} warm-up =="
    )
    print(f"{'model':<22}{'device':<8}{'load s':>7}{'ms/frame median (min)':>24}{'frames/s':>10}{'peak GiB':>10}")
    for r in results:
        latency = f"{r.median_ms:.1f} ({r.min_ms:.1f})"
        peak = f"{r.peak_gib:.2f}" if r.peak_gib is not None else "-"
        print(f"{r.model:<22}{args.device:<8}{r.load_s:>7.1f}{latency:>24}{1e3 / r.median_ms:>10.2f}{peak:>10}")
    print("insightface (SCRFD det_10g, faces): not measured, it needs the insightface package and buffalo_l's ONNX weights")
    for r in results:
        if r.note:
            print(f"{r.model}: {r.note}")

    where = "alone on one GPU" if cuda else f"on {args.threads} CPU thread(s)"
    per = "per GPU (one actor)" if cuda else "per actor"
    print(f"\n== one actor {where}, calls in series; decoding at {args.decode_cpu_s} CPU-s per clip ==")
    for r in results:
        clips = 1e3 / r.median_ms
        line = f"{r.model}: {clips:.2f} clips/s {per} at 1 call per clip; keeps up with {clips * args.decode_cpu_s:.2f} decode CPUs"
        if r.model.startswith("grounding-dino"):  # detection tries the next candidate when one fails
            line += (
                f"; at {CANDIDATES} calls per clip (every candidate tried) {clips / CANDIDATES:.2f} clips/s, "
                f"{clips / CANDIDATES * args.decode_cpu_s:.2f} decode CPUs"
            )
        print(line)
    if cuda:
        print(
            "(preprocess_paper.yaml packs 4 detect actors (num_gpus 0.25) and 2 segment actors (0.5) per GPU; "
            "actors sharing a GPU may overlap their CPU and GPU work: not measured here)"
        )


if __name__ == "__main__":
    main()
