"""Benchmark PISA's processors: one layer against the naive definition, and the UNet step against stock attention.

Why: docs/method.md, section 3 defines PISA as 16 separate attentions over (frame_i tokens ++ reference tokens).
`PISAAttnProcessor` ("merged") computes the reference's self-attention once and merges partial softmaxes by
their log-sum-exp (49 T^2 score entries per head); `PairedPISAAttnProcessor` ("paired", the previous one)
runs one batched SDPA over the 16 materialised pairings (64 T^2). This script checks both against the
definition and measures, in one run: attention FLOPs (torch.utils.flop_counter counts the fused attention
kernels), forward and forward+backward time, peak memory of one layer forward+backward, the paper UNet's
training step against stock attention, and prints the merged processor's targets with a verdict each.

CPU (default): layer timings at latent 32x32 (the paper's 64x64 has 4x the tokens per frame, too slow on
2 cores; its FLOPs are counted on fake tensors) and UNet forward+backward at latent 8x8, random weights,
float32; peak memory from torch's MemTracker. `--device cuda`: paper size (latent 64x64) in bfloat16, with
and without gradient checkpointing, peak memory from the CUDA allocator.

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
from videomaker.pisa import PairedPISAAttnProcessor, PISAAttnProcessor, install_pisa, is_pisa_layer
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


PROCESSORS = ("naive", "paired", "merged")


@dataclass
class LayerRow:
    """One width's figures; dicts are keyed by processor."""

    width: int
    tokens: int
    max_diff: dict[str, float]  # forward, against the naive definition
    flops: dict[str, int]  # attention kernels, forward+backward, at the timed size
    paper_flops: dict[str, int]  # the same at the paper's 64x64 latent (fake tensors)
    forward: dict[str, Timing]
    train: dict[str, Timing]  # forward+backward
    peak_bytes: dict[str, int]  # one forward+backward; no naive entry on the CPU


def layer_call(name: str) -> Callable[[Attention, torch.Tensor], torch.Tensor]:
    return {"naive": naive_pisa, "paired": PairedPISAAttnProcessor(FRAMES), "merged": PISAAttnProcessor(FRAMES)}[name]


def forward_backward(fn: Callable, attn: Attention, x: torch.Tensor) -> None:
    fn(attn, x).sum().backward()
    attn.zero_grad(set_to_none=True)
    x.grad = None


def attention_flops(fn: Callable[[], object]) -> int:
    """FLOPs of the fused attention kernels (SDPA and the aten flash/efficient ops), forward and backward."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return sum(n for op, n in counter.get_flop_counts()["Global"].items() if "attention" in str(op))


def count_layer_flops(width: int, tokens: int) -> dict[str, int]:
    """Forward+backward attention FLOPs per processor on fake CPU tensors: no memory, any size."""
    with FakeTensorMode(allow_non_fake_inputs=True):
        attn = Attention(query_dim=width, heads=8, dim_head=width // 8, bias=False)
        x = torch.randn(FRAMES, tokens, width, requires_grad=True)
        return {name: attention_flops(partial(forward_backward, layer_call(name), attn, x)) for name in PROCESSORS}


def peak_memory(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes during `fn` beyond what was allocated before it: the CUDA allocator, or MemTracker on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    from torch.distributed._tools.mem_tracker import MemTracker

    tracker = MemTracker()
    with tracker:
        fn()
    # Tensors created inside `fn` only: parameters and inputs existed before and are not tracked.
    return int(tracker.get_tracker_snapshot("peak")[device]["Total"])


def bench_layers(latent: int, device: torch.device, dtype: torch.dtype, repeats: int) -> list[LayerRow]:
    rows = []
    for level, width in enumerate(WIDTHS):
        tokens = (latent // 2**level) ** 2
        print(f"  layer C={width}, T={tokens} ...", flush=True)
        attn = Attention(query_dim=width, heads=8, dim_head=width // 8, bias=False).to(device, dtype)
        x = torch.randn(FRAMES, tokens, width, device=device, dtype=dtype)
        with torch.inference_mode():
            expected = naive_pisa(attn, x)
            max_diff = {name: (layer_call(name)(attn, x) - expected).abs().max().item() for name in PROCESSORS}
            forward = interleaved({name: partial(layer_call(name), attn, x) for name in PROCESSORS}, repeats, device)
        del expected
        xg = x.clone().requires_grad_()
        calls = {name: partial(forward_backward, layer_call(name), attn, xg) for name in PROCESSORS}
        flops = {name: attention_flops(call) for name, call in calls.items()}
        # MemTracker refuses a module called twice in one pass, as the naive loop calls to_q: paired and merged only.
        peak = {name: peak_memory(call, device) for name, call in calls.items() if name != "naive" or device.type == "cuda"}
        train = interleaved(calls, repeats, device)
        paper_tokens = (PAPER_LATENT // 2**level) ** 2
        paper_flops = flops if paper_tokens == tokens else count_layer_flops(width, paper_tokens)
        rows.append(LayerRow(width, tokens, max_diff, flops, paper_flops, forward, train, peak))
    return rows


def peak_mib(row: LayerRow, name: str) -> str:
    return f"{row.peak_bytes[name] / 2**20:.1f}" if name in row.peak_bytes else "-"


def print_layers(rows: list[LayerRow], latent: int, where: str, repeats: int) -> list[tuple[str, bool]]:
    """The layer tables; returns (target, held) for the merged processor's targets."""
    print(f"\n== PISA layer, {FRAMES} frames, 8 heads, latent {latent}x{latent}, {where}; median (min) of {repeats} ==")
    print(f"{'C':>5} {'T':>5} {'':<9} {'forward ms':>17} {'fwd+bwd ms':>17} {'peak MiB':>9} {'attn GFLOP':>11} {'max|diff|':>9}")
    for row in rows:
        for name in PROCESSORS:
            fwd, train = row.forward[name], row.train[name]
            print(
                f"{row.width:>5} {row.tokens:>5} {name:<9} {fwd.median_s * 1e3:>8.1f} ({fwd.min_s * 1e3:>6.1f})"
                f" {train.median_s * 1e3:>8.1f} ({train.min_s * 1e3:>6.1f}) {peak_mib(row, name):>9}"
                f" {row.flops[name] / 1e9:>11.2f} {row.max_diff[name]:>9.1e}"
            )
    print("\n== merged vs paired (today's) and vs naive; ratios > 1 favour merged; time as median (min) ==")
    print(f"{'C':>5} {'fwd speed-up':>14} {'fwd+bwd speed-up':>17} {'vs naive fwd':>13} {'peak mem':>9} {'FLOPs':>6} {'FLOPs 64x64':>12}")
    held = []
    for row in rows:
        m, p = "merged", "paired"
        fwd = (row.forward[p].median_s / row.forward[m].median_s, row.forward[p].min_s / row.forward[m].min_s)
        train = (row.train[p].median_s / row.train[m].median_s, row.train[p].min_s / row.train[m].min_s)
        naive = row.forward["naive"].median_s / row.forward[m].median_s
        memory = row.peak_bytes[m] / row.peak_bytes[p]
        flops, paper_flops = row.flops[m] / row.flops[p], row.paper_flops[m] / row.paper_flops[p]
        print(
            f"{row.width:>5} {fwd[0]:>7.2f} ({fwd[1]:.2f}) {train[0]:>10.2f} ({train[1]:.2f}) {naive:>13.2f}"
            f" {memory:>9.2f} {flops:>6.3f} {paper_flops:>12.3f}"
        )
        held += [
            (f"C={row.width}: attention FLOPs <= 0.78x paired (here and at 64x64)", max(flops, paper_flops) <= 0.78),
            (f"C={row.width}: not slower than paired (forward and fwd+bwd medians)", min(fwd[0], train[0]) >= 1.0),
            (f"C={row.width}: peak layer memory below paired", memory < 1.0),
        ]
        if row.width == WIDTHS[0]:
            held.append((f"C={row.width}: >= 1.15x faster than paired (forward and fwd+bwd medians)", min(fwd[0], train[0]) >= 1.15))
    print("peak mem, FLOPs: merged/paired (lower is better); FLOPs = fused attention kernels, forward+backward")
    return held


UNET_VARIANTS = ("stock", "paired", "merged")


def set_variant(unet: torch.nn.Module, variant: str, checkpointing: bool = False) -> None:
    """`stock`: AnimateDiff's attention everywhere (the reference is just a 17th frame); else that PISA implementation."""
    if variant in ("paired", "merged"):
        install_pisa(unet, num_frames=FRAMES, implementation=variant)
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
        for variant in UNET_VARIANTS:
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
    configs = [(variant, ckpt) for ckpt in ((False, True) if cuda else (False,)) for variant in UNET_VARIANTS]
    steps = bench_unet(unet, unet_latent, configs, device, dtype, args.repeats)
    del unet

    print("[3/3] FLOPs (FlopCounterMode, forward+backward)", flush=True)
    flops = {latent: count_flops(latent) for latent in sorted({unet_latent, PAPER_LATENT})}

    held = print_layers(layers, layer_latent, where, args.repeats)

    print(
        f"\n== paper UNet forward+backward, {FRAMES} frames, latent {unet_latent}x{unet_latent}, {where}; median (min) of {args.repeats} =="
    )
    print(f"{'attention':<9} {'ckpt':<4} {'s/step':>13} {'peak GiB':>8} {'time/stock':>14} {'FLOPs/stock':>11}")
    for (variant, ckpt), timing in steps.items():
        memory = f"{timing.peak_bytes / 2**30:.1f}" if cuda else "-"  # the UNet's CPU peak is not measured
        seconds = f"{timing.median_s:.2f} ({timing.min_s:.2f})"
        stock = steps.get(("stock", ckpt))
        ratio = f"{timing.median_s / stock.median_s:.3f} ({timing.min_s / stock.min_s:.3f})" if stock else "-"
        flop_ratio = flops[unet_latent][variant][0] / flops[unet_latent]["stock"][0]
        print(f"{variant:<9} {'on' if ckpt else 'off':<4} {seconds:>13} {memory:>8} {ratio:>14} {flop_ratio:>11.3f}")

    print("\n== FLOPs, forward+backward, paper UNet, 17 frames ==")
    print(f"{'latent':>6} {'attention':<9} {'TFLOP':>7} {'SDPA %':>7} {'attn1 %':>7} {'vs stock':>8}")
    for latent, variants in flops.items():
        for variant, (total, sdpa_share, attn1_share) in variants.items():
            ratio = total / variants["stock"][0]
            print(f"{latent:>6} {variant:<9} {total / 1e12:>7.2f} {sdpa_share:>7.1%} {attn1_share:>7.1%} {ratio:>8.3f}")
    print("attn1 % = the 16 spatial self-attention layers PISA replaces (projections + SDPA)")
    print("SDPA % = all attention kernels (spatial self, text cross, temporal)")
    paper = flops[PAPER_LATENT]
    held.append(("paper UNet at 64x64: merged fwd+bwd FLOPs below paired's", paper["merged"][0] < paper["paired"][0]))
    print("\n== targets of the merged processor ==")
    for target, ok in held:
        print(f"{'held' if ok else 'NOT HELD':<8} {target}")
    if not cuda:  # other jobs on a shared CPU inflate medians; say how busy it was
        load = f"{load_at_start:.1f} at start, {os.getloadavg()[0]:.1f} at end"
        print(f"1-min load average: {load} ({args.threads} threads used here)")


if __name__ == "__main__":
    main()
