"""Benchmark PISA: one layer against its naive definition, and the UNet training step against stock attention.

Why: docs/method.md, section 3 defines PISA as 16 separate attentions over (frame_i tokens ++ reference tokens).
`PISAAttnProcessor` instead projects the 17 frames once and runs one batched SDPA. This script checks
that it matches the definition, that it is not slower, and what it adds to a training step of the
paper-size UNet, in time and in FLOPs (torch.utils.flop_counter, which counts SDPA).

CPU (default): layers at latent 32x32 (the paper's 64x64 has 4x the tokens per frame, too slow on
2 cores) and UNet forward+backward at latent 8x8, random weights, float32. `--device cuda`: paper
size (latent 64x64, 512 px) in bfloat16, with and without gradient checkpointing, plus peak memory.

    HF_HUB_OFFLINE=1 python bench/pisa.py [--device cuda]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import partial

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode

from videomaker.loading import build_unet_skeleton
from videomaker.pisa import PISAAttnProcessor, install_pisa, is_pisa_layer
from videomaker.trainable import select_trainable

FRAMES = 17  # 16 generated frames + the reference, last
WIDTHS = (320, 640, 1280)  # spatial attention widths of SD1.5; tokens shrink 4x per level
PAPER_LATENT = 64  # 512 px


def naive_pisa(attn: Attention, hidden_states: torch.Tensor) -> torch.Tensor:
    """docs/method.md, section 3 literally: one attention per generated frame over its tokens ++ the reference's."""
    stock = AttnProcessor2_0()  # the layer's own to_q/to_k/to_v, SDPA, to_out
    x = hidden_states.unflatten(0, (-1, FRAMES))  # b, f, T, C
    video, reference, tokens = x[:, :-1], x[:, -1], x.shape[2]
    frame_outs, reference_outs = [], []
    for i in range(FRAMES - 1):
        y = stock(attn, torch.cat([video[:, i], reference], dim=1))  # b, 2T, C
        frame_outs.append(y[:, :tokens])
        reference_outs.append(y[:, tokens:])
    reference_out = torch.stack(reference_outs).mean(dim=0)
    return torch.stack([*frame_outs, reference_out], dim=1).flatten(0, 1)  # (b f), T, C


@dataclass
class Timing:
    """Seconds per call over the timed repetitions, and peak memory."""

    median_s: float
    min_s: float  # least disturbed by other jobs sharing the CPU
    peak_bytes: int  # CUDA only, else 0


def interleaved(fns: dict[Hashable, Callable[[], object]], repeats: int, device: torch.device) -> dict[Hashable, Timing]:
    """A `Timing` per named callable.

    One warm-up call each, then the callables take turns, so drift (other jobs, allocator) hits all alike.
    """
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns.values():
        fn()
    seconds, peak = {name: [] for name in fns}, dict.fromkeys(fns, 0)
    for _ in range(repeats):
        for name, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync()
            start = time.perf_counter()
            fn()
            sync()
            seconds[name].append(time.perf_counter() - start)
            if device.type == "cuda":
                peak[name] = max(peak[name], torch.cuda.max_memory_allocated())
    return {name: Timing(statistics.median(seconds[name]), min(seconds[name]), peak[name]) for name in fns}


def count_call_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def bench_layers(latent: int, device: torch.device, dtype: torch.dtype, repeats: int) -> list[tuple]:
    """Per width: (C, T, naive Timing, PISA Timing, naive/PISA FLOP ratio, max abs difference)."""
    rows = []
    for level, width in enumerate(WIDTHS):
        tokens = (latent // 2**level) ** 2
        print(f"  layer C={width}, T={tokens} ...", flush=True)
        attn = Attention(query_dim=width, heads=8, dim_head=width // 8, bias=False).to(device, dtype).eval()
        x = torch.randn(FRAMES, tokens, width, device=device, dtype=dtype)
        pisa = PISAAttnProcessor(FRAMES)
        with torch.inference_mode():
            max_diff = (pisa(attn, x) - naive_pisa(attn, x)).abs().max().item()
            calls = {"naive": partial(naive_pisa, attn, x), "pisa": partial(pisa, attn, x)}
            flop_ratio = count_call_flops(calls["naive"]) / count_call_flops(calls["pisa"])
            times = interleaved(calls, repeats, device)
        rows.append((width, tokens, times["naive"], times["pisa"], flop_ratio, max_diff))
    return rows


def set_variant(unet: torch.nn.Module, variant: str, checkpointing: bool = False) -> None:
    """`stock`: AnimateDiff's attention everywhere (the reference is just a 17th frame); `pisa`: PISA installed."""
    if variant == "pisa":
        install_pisa(unet, num_frames=FRAMES)
    else:
        unet.set_attn_processor(AttnProcessor2_0())
    if checkpointing:
        unet.enable_gradient_checkpointing()
    else:
        unet.disable_gradient_checkpointing()


def unet_inputs(latent: int, device: torch.device, dtype: torch.dtype) -> dict:
    return dict(
        sample=torch.randn(1, 4, FRAMES, latent, latent, device=device, dtype=dtype),
        timestep=torch.tensor([500], device=device),
        encoder_hidden_states=torch.randn(FRAMES, 77, 768, device=device, dtype=dtype),
    )


def train_step(unet: torch.nn.Module, inputs: dict) -> None:
    """Forward + backward; gradients reach only the trainable parameters (`select_trainable`)."""
    unet(**inputs).sample.mean().backward()
    unet.zero_grad(set_to_none=True)


def bench_unet(
    unet: torch.nn.Module,
    latent: int,
    configs: list[tuple[str, bool]],
    device: torch.device,
    dtype: torch.dtype,
    repeats: int,
) -> dict[tuple[str, bool], Timing]:
    """Training-step `Timing` per (variant, gradient checkpointing) configuration, interleaved."""
    inputs = unet_inputs(latent, device, dtype)

    def run(config: tuple[str, bool]) -> None:
        set_variant(unet, *config)  # cheap: swaps processor objects, no weights move
        train_step(unet, inputs)

    fns = {}
    for config in configs:  # on a GPU the largest configurations may not fit; drop those, say so
        try:
            run(config)
            fns[config] = lambda config=config: run(config)
        except torch.OutOfMemoryError:
            unet.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            print(f"  {config}: out of memory, skipped", flush=True)
    return interleaved(fns, repeats, device)


def count_flops(latent: int) -> dict[str, tuple[float, float, float]]:
    """Forward+backward FLOPs of the paper UNet per variant: (total, SDPA share, spatial attn1 share).

    Runs on fake CPU tensors: same kernels as the timed CPU run (meta tensors would decompose SDPA
    into bmm and count its backward differently), no memory, seconds even at latent 64x64.
    """
    unet = build_unet_skeleton("paper", device="meta")
    result = {}
    with FakeTensorMode(allow_non_fake_inputs=True):
        unet = unet.to_empty(device="cpu").train()
        select_trainable(unet, update_motion=True)
        inputs = unet_inputs(latent, torch.device("cpu"), torch.float32)
        for variant in ("stock", "pisa"):
            set_variant(unet, variant)
            with FlopCounterMode(display=False) as counter:
                train_step(unet, inputs)
            counts = counter.get_flop_counts()
            total = counter.get_total_flops()
            sdpa = sum(n for op, n in counts["Global"].items() if "scaled_dot_product" in str(op))
            # The 16 layers PISA replaces, projections included; the only place the variants differ.
            attn1 = sum(sum(ops.values()) for name, ops in counts.items() if name.endswith(".attn1") and is_pisa_layer(name + "."))
            result[variant] = (total, sdpa / total, attn1 / total)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--layer-latent", type=int, help="latent side for the layer bench (default: 32 cpu, 64 cuda)")
    parser.add_argument("--unet-latent", type=int, help="latent side for the UNet bench (default: 8 cpu, 64 cuda)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per implementation after one warm-up")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    load_at_start = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32  # CPUs gain nothing from bf16
    layer_latent = args.layer_latent or (PAPER_LATENT if cuda else 32)
    unet_latent = args.unet_latent or (PAPER_LATENT if cuda else 8)
    machine = torch.cuda.get_device_name() if cuda else f"cpu ({args.threads} threads)"
    where = f"{str(dtype).removeprefix('torch.')} on {machine}"

    print(f"[1/3] PISA layer vs naive definition, latent {layer_latent}x{layer_latent}, {where}", flush=True)
    layers = bench_layers(layer_latent, device, dtype, args.repeats)

    print(f"[2/3] paper UNet forward+backward, latent {unet_latent}x{unet_latent}, {where}", flush=True)
    print("  building the paper-size UNet with random weights ...", flush=True)
    unet = build_unet_skeleton("paper", device=device).train()
    if dtype != torch.float32:  # a no-op cast would still trigger diffusers' keep-in-fp32 warning
        unet.to(dtype)
    select_trainable(unet, update_motion=True)
    configs = [(variant, ckpt) for ckpt in ((False, True) if cuda else (False,)) for variant in ("stock", "pisa")]
    steps = bench_unet(unet, unet_latent, configs, device, dtype, args.repeats)
    del unet

    print("[3/3] FLOPs (FlopCounterMode, forward+backward)", flush=True)
    flops = {latent: count_flops(latent) for latent in sorted({unet_latent, PAPER_LATENT})}

    print(
        f"\n== PISA layer forward, {FRAMES} frames, 8 heads, latent {layer_latent}x{layer_latent}, {where}; "
        f"median (min) of {args.repeats} =="
    )
    print(f"{'C':>5} {'T':>5} {'naive ms':>15} {'PISA ms':>15} {'naive/PISA':>13} {'FLOP n/P':>9} {'max|diff|':>9}")
    for width, tokens, naive, pisa, flop_ratio, max_diff in layers:
        naive_ms = f"{naive.median_s * 1e3:.1f} ({naive.min_s * 1e3:.1f})"
        pisa_ms = f"{pisa.median_s * 1e3:.1f} ({pisa.min_s * 1e3:.1f})"
        speedup = f"{naive.median_s / pisa.median_s:.2f} ({naive.min_s / pisa.min_s:.2f})"
        print(f"{width:>5} {tokens:>5} {naive_ms:>15} {pisa_ms:>15} {speedup:>13} {flop_ratio:>9.2f} {max_diff:>9.1e}")

    print(
        f"\n== paper UNet forward+backward, {FRAMES} frames, latent {unet_latent}x{unet_latent}, {where}; median (min) of {args.repeats} =="
    )
    print(f"{'attention':<9} {'ckpt':<4} {'s/step':>13} {'peak GiB':>8}")
    for (variant, ckpt), timing in steps.items():
        memory = f"{timing.peak_bytes / 2**30:.1f}" if cuda else "-"  # CPU peak memory is not tracked by torch
        seconds = f"{timing.median_s:.2f} ({timing.min_s:.2f})"
        print(f"{variant:<9} {'on' if ckpt else 'off':<4} {seconds:>13} {memory:>8}")
    if ("stock", False) in steps and ("pisa", False) in steps:
        pisa, stock = steps[("pisa", False)], steps[("stock", False)]
        time_ratio = f"{pisa.median_s / stock.median_s:.3f} ({pisa.min_s / stock.min_s:.3f})"
        flop_ratio = flops[unet_latent]["pisa"][0] / flops[unet_latent]["stock"][0]
        print(f"PISA/stock: time {time_ratio}, FLOPs {flop_ratio:.3f}")

    print("\n== FLOPs, forward+backward, paper UNet, 17 frames ==")
    print(f"{'latent':>6} {'attention':<9} {'TFLOP':>7} {'SDPA %':>7} {'attn1 %':>7} {'vs stock':>8}")
    for latent, variants in flops.items():
        for variant, (total, sdpa_share, attn1_share) in variants.items():
            ratio = total / variants["stock"][0]
            print(f"{latent:>6} {variant:<9} {total / 1e12:>7.2f} {sdpa_share:>7.1%} {attn1_share:>7.1%} {ratio:>8.3f}")
    print("attn1 % = the 16 spatial self-attention layers PISA replaces (projections + SDPA)")
    print("SDPA % = all attention kernels (spatial self, text cross, temporal)")
    if not cuda:  # other jobs on a shared CPU inflate medians; say how busy it was
        load = f"{load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at end"
        print(f"1-min load average: {load} ({args.threads} threads used here)")


if __name__ == "__main__":
    main()
