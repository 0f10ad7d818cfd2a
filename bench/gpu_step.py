"""Paper-size GPU benchmark: training step and 30-step inference, stock attention vs PISA (paired, merged).

The "paper" preset's UNetMotionModel with random weights, 512x512 (latent 64x64), 16 frames + the
reference = 17. Before any timing, "merged" is checked against "paired" in float32 (one PISA layer,
one UNet forward), and the layer's bf16-autocast output and input gradient (the kernels training
runs) against float32, merged within 2x paired's error. Then, per attention (stock: the reference is just a 17th frame; pisa-paired;
pisa-merged), with and without gradient checkpointing:
  train: the project's `training_step` on one pre-encoded video (GIRL loss under bf16 autocast over
         float32 weights, backward, gradient clipping, AdamW over the trainable parameters);
  infer: the UNet denoising loop of one video (DDIM, classifier-free guidance: UNet batch 2 videos
         x 17 frames per step), bf16 weights; no text encoding, no VAE decode.
Needs a CUDA GPU; a few minutes on one H100/H200.

On a lent GPU machine that has torch and transformers but no diffusers: here, in the checkout,

    echo /.whl/ >> .git/info/exclude
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 -d .whl diffusers==0.42.1

(diffusers is pure Python; add any other missing package the same way), carry `.whl`, and run there

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \\
        PYTHONPATH=/tmp/site:. python3 bench/gpu_step.py --out $OUT/gpu_step.json
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import diffusers
import torch
import transformers
from diffusers.models.attention_processor import AttnProcessor2_0

from videomaker.loading import VideoMakerComponents, build_unet_skeleton
from videomaker.pisa import install_pisa, is_pisa_layer
from videomaker.presets import load_preset
from videomaker.scheduling import make_scheduler
from videomaker.trainable import select_trainable
from videomaker.training import MixedPrecision, TrainingBatch, make_optimizer, training_step

ATTENTIONS = ("stock", "pisa-paired", "pisa-merged")
GUIDANCE_SCALE = 8.0  # VideoMakerPipeline's default
TEXT_TOKENS = 77
EXACTNESS_TOLERANCE = 1e-3
NO_GPU = "bench/gpu_step.py needs a CUDA GPU (torch.cuda.is_available() is False): run it on a GPU machine; see --help"


@dataclass(frozen=True)
class Setup:
    preset: str
    device: torch.device
    train_precision: MixedPrecision  # autocast of the training step; weights stay float32
    infer_dtype: torch.dtype
    steps: int  # denoising steps per video
    repeats: int  # timed training steps / videos per configuration
    warmup: int  # untimed training steps / denoising steps first


def make_setup(args: argparse.Namespace) -> Setup:
    if args.smoke:  # the whole code path in seconds on a CPU; the figures mean nothing
        return Setup("tiny", torch.device("cpu"), "no", torch.float32, steps=2, repeats=1, warmup=1)
    return Setup("paper", torch.device("cuda"), "bf16", torch.bfloat16, steps=args.steps, repeats=args.repeats, warmup=2)


@dataclass
class Measure:
    """Seconds per call (timed calls after warm-up) and the peak allocated memory over warm-up and timed calls."""

    seconds: list[float]
    peak_gib: float | None  # None on a CPU (torch does not track it there)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)


def pisa_layer_keys(unet: torch.nn.Module) -> list[str]:
    return [name for name in unet.attn_processors if is_pisa_layer(name)]


def set_attention(unet: torch.nn.Module, attention: str, num_frames: int) -> str:
    """Install `attention` and return the implementation that runs on the PISA layers."""
    if attention == "stock":
        unet.set_attn_processor(AttnProcessor2_0())
        return "stock"
    implementation = attention.removeprefix("pisa-")
    install_pisa(unet, num_frames=num_frames, implementation=implementation)
    return implementation


def describe(unet: torch.nn.Module) -> str:
    processors = {type(unet.attn_processors[key]).__name__ for key in pisa_layer_keys(unet)}
    return f"{', '.join(sorted(processors))} on the {len(pisa_layer_keys(unet))} PISA layers"


def release_memory(unet: torch.nn.Module) -> None:
    unet.zero_grad(set_to_none=True)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure(call: Callable[[], object], warmup: Callable[[], object], repeats: int, device: torch.device) -> Measure:
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    warmup()
    seconds = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        call()
        sync()
        seconds.append(time.perf_counter() - start)
    return Measure(seconds, torch.cuda.max_memory_allocated() / 2**30 if cuda else None)


def out_of_memory_guard(run: Callable[[], Measure], unet: torch.nn.Module) -> tuple[Measure | None, str | None]:
    """`run()`, or (None, "out of memory") when the GPU cannot hold the configuration; memory is released either way."""
    try:
        result, error = run(), None
    except torch.OutOfMemoryError:
        result, error = None, "out of memory"
    release_memory(unet)  # after the except block, so the traceback no longer holds the step's tensors
    return result, error


@contextmanager
def exact_float32() -> Iterator[None]:
    """No TF32 in matmuls and convolutions, so float32 differences are the implementations', not the kernels'."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def unet_forward_inputs(unet: torch.nn.Module, frames: int, latent: int, device: torch.device, dtype: torch.dtype) -> dict:
    return dict(
        sample=torch.randn(1, unet.config.in_channels, frames, latent, latent, device=device, dtype=dtype),
        timestep=torch.tensor([500], device=device),
        encoder_hidden_states=torch.randn(frames, TEXT_TOKENS, unet.config.cross_attention_dim, device=device, dtype=dtype),
    )


def check_exactness(unet: torch.nn.Module, frames: int, latent: int, device: torch.device) -> dict:
    """Max |merged - paired| in float32: the first PISA layer (most tokens) on random input, and one UNet forward."""
    key = pisa_layer_keys(unet)[0]
    attn = unet.get_submodule(key.removesuffix(".processor"))
    x = torch.randn(frames, latent * latent, attn.to_q.in_features, device=device)
    inputs = unet_forward_inputs(unet, frames, latent, device, torch.float32)
    outputs = {}
    unet.eval()
    with torch.inference_mode(), exact_float32():
        for implementation in ("paired", "merged"):
            set_attention(unet, f"pisa-{implementation}", frames)
            outputs[implementation] = (unet.attn_processors[key](attn, x), unet(**inputs).sample)
    (layer_paired, unet_paired), (layer_merged, unet_merged) = outputs["paired"], outputs["merged"]
    low = low_precision_errors(unet, key, attn, x, frames)
    return low | {
        "layer": key.removesuffix(".processor"),
        "layer_tokens": latent * latent,
        "layer_max_abs_diff": (layer_merged - layer_paired).abs().max().item(),
        "layer_max_abs_output": layer_paired.abs().max().item(),
        "unet_max_abs_diff": (unet_merged - unet_paired).abs().max().item(),
        "unet_max_abs_output": unet_paired.abs().max().item(),
    }


def low_precision_errors(unet: torch.nn.Module, key: str, attn: torch.nn.Module, x: torch.Tensor, frames: int) -> dict:
    """The layer in bf16 autocast (the kernels training uses: FlashAttention-2 on a GPU), output and input
    gradient, each implementation's max error against paired in float32; merged may be up to 2x paired's
    (it rounds two partial outputs where paired rounds one; tests/test_pisa.py bounds it the same way)."""
    upstream = torch.randn_like(x)
    results = {}
    for implementation, autocast in (("paired", False), ("paired", True), ("merged", True)):
        set_attention(unet, f"pisa-{implementation}", frames)
        xg = x.clone().requires_grad_()
        with exact_float32(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            out = unet.attn_processors[key](attn, xg)
            (grad,) = torch.autograd.grad((out.float() * upstream).sum(), xg)
        results[implementation, autocast] = out.detach().float(), grad
    reference_out, reference_grad = results["paired", False]
    errors = {}
    for implementation in ("paired", "merged"):
        out, grad = results[implementation, True]
        errors[f"bf16_{implementation}_out_error"] = (out - reference_out).abs().max().item()
        errors[f"bf16_{implementation}_grad_error"] = (grad - reference_grad).abs().max().item()
    return errors


def training_batch(unet: torch.nn.Module, frames: int, latent: int, device: torch.device) -> TrainingBatch:
    """One pre-encoded video, as the preprocess job stores them: the training step then needs no VAE or text encoder."""
    channels = unet.config.in_channels
    return TrainingBatch(
        video_latents=torch.randn(1, channels, frames - 1, latent, latent, device=device),
        reference_latents=torch.randn(1, channels, 1, latent, latent, device=device),
        text_embeddings=torch.randn(1, TEXT_TOKENS, unet.config.cross_attention_dim, device=device),
    )


def time_training(components: VideoMakerComponents, parameters: list, batch: TrainingBatch, setup: Setup, checkpointing: bool) -> Measure:
    unet = components.unet
    unet.enable_gradient_checkpointing() if checkpointing else unet.disable_gradient_checkpointing()
    unet.train()
    optimizer = make_optimizer(parameters)  # fresh per configuration: its state counts in the peak
    generator = torch.Generator(setup.device).manual_seed(0)

    def step() -> None:
        training_step(components, batch, optimizer, generator=generator, mixed_precision=setup.train_precision)

    def warmup() -> None:
        for _ in range(setup.warmup):
            step()

    return measure(step, warmup, setup.repeats, setup.device)


def time_inference(unet: torch.nn.Module, frames: int, latent: int, setup: Setup) -> Measure:
    """One video per call: `setup.steps` DDIM steps of VideoMakerPipeline's UNet loop (reference last, CFG)."""
    device, dtype, generated = setup.device, setup.infer_dtype, frames - 1
    channels = unet.config.in_channels
    scheduler = make_scheduler()
    text = torch.randn(2 * frames, TEXT_TOKENS, unet.config.cross_attention_dim, device=device, dtype=dtype)  # uncond, cond
    reference = torch.randn(1, channels, 1, latent, latent, device=device, dtype=dtype)
    reference = torch.cat([torch.zeros_like(reference), reference])  # the uncond branch gets a zero reference

    def video(steps: int) -> torch.Tensor:
        generator = torch.Generator(device).manual_seed(0)
        latents = torch.randn(1, channels, generated, latent, latent, generator=generator, device=device, dtype=dtype)
        scheduler.set_timesteps(steps, device=device)
        latents = latents * scheduler.init_noise_sigma
        for t in scheduler.timesteps:
            sample = scheduler.scale_model_input(torch.cat([latents.repeat(2, 1, 1, 1, 1), reference], dim=2), t)
            uncond, cond = unet(sample, t, encoder_hidden_states=text).sample[:, :, :generated].chunk(2)
            latents = scheduler.step(uncond + GUIDANCE_SCALE * (cond - uncond), t, latents, eta=0.0).prev_sample
        return latents

    unet.eval()
    with torch.inference_mode():
        return measure(lambda: video(setup.steps), lambda: video(setup.warmup), setup.repeats, device)


def ratio(value: float | None, stock: float | None) -> float | None:
    return value / stock if value is not None and stock else None


def build_rows(attentions: list[str], train: dict, infer: dict) -> list[dict]:
    rows = []
    for attention in attentions:
        for checkpointing in (False, True):
            measured, error = train[attention, checkpointing]
            stock, _ = train["stock", checkpointing]
            seconds = measured.median_s if measured else None
            peak = measured.peak_gib if measured else None
            row = {
                "attention": attention,
                "checkpointing": checkpointing,
                "train_s_per_step": seconds,
                "train_s": measured.seconds if measured else None,
                "train_peak_gib": peak,
                "train_error": error,
                "train_vs_stock": ratio(seconds, stock.median_s if stock else None),
                "train_peak_vs_stock": ratio(peak, stock.peak_gib if stock else None),
            }
            if not checkpointing:  # inference has no backward: one figure per attention
                measured, error = infer[attention]
                stock, _ = infer["stock"]
                seconds = measured.median_s if measured else None
                row |= {
                    "infer_s_per_video": seconds,
                    "infer_s": measured.seconds if measured else None,
                    "infer_peak_gib": measured.peak_gib if measured else None,
                    "infer_error": error,
                    "infer_vs_stock": ratio(seconds, stock.median_s if stock else None),
                }
            rows.append(row)
    return rows


def format_table(rows: list[dict], info: dict) -> str:
    def cell(value: float | None, error: str | None, digits: int) -> str:
        if error:
            return "OOM" if error == "out of memory" else "error"
        return "-" if value is None else f"{value:.{digits}f}"

    latent, frames = info["latent"], info["frames"]
    lines = [
        f"== {info['preset']} UNet (random weights), {frames} frames ({frames - 1} + reference), latent {latent}x{latent}, "
        f"{info['device']}; median of {info['repeats']} after warm-up ==",
        f"train: training_step on 1 video (GIRL loss in {info['train_precision']}, backward, grad clip, "
        f"AdamW over {info['trainable_parameters']:,} trainable parameters)",
        f"infer: UNet denoising loop only, {info['steps']} DDIM steps with CFG (UNet batch 2 videos x {frames} frames), "
        f"{info['infer_dtype']} weights; no text encoder, no VAE decode",
        f"{'attention':<12} {'ckpt':<4} {'train s/step':>12} {'x stock':>7} {'peak GiB':>8} {'x stock':>7} "
        f"{'infer s/video':>13} {'x stock':>7} {'infer GiB':>9}",
    ]
    for row in rows:
        train_error, infer_error = row["train_error"], row.get("infer_error")
        infer = "infer_s_per_video" in row
        lines.append(
            f"{row['attention']:<12} {'on' if row['checkpointing'] else 'off':<4} "
            f"{cell(row['train_s_per_step'], train_error, 3):>12} {cell(row['train_vs_stock'], train_error, 2):>7} "
            f"{cell(row['train_peak_gib'], train_error, 1):>8} {cell(row['train_peak_vs_stock'], train_error, 2):>7} "
            f"{cell(row.get('infer_s_per_video'), infer_error, 2) if infer else '':>13} "
            f"{cell(row.get('infer_vs_stock'), infer_error, 2) if infer else '':>7} "
            f"{cell(row.get('infer_peak_gib'), infer_error, 1) if infer else '':>9}"
        )
    lines.append("x stock: ratio to stock attention with the same checkpointing; OOM: out of memory in that configuration")
    lines.append("inference has no backward, so checkpointing does not apply: its figures are on the ckpt-off rows")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed training steps and videos per configuration (default 5)")
    parser.add_argument("--steps", type=int, default=30, help="denoising steps per video (default 30)")
    parser.add_argument("--out", type=Path, help="also write the figures and the table (key 'table') as JSON to this file")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="for tests only: the whole code path on the CPU with the tiny preset (latent 8x8, float32, 2 steps, 1 repeat)",
    )
    args = parser.parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():  # before building anything
        print(NO_GPU, file=sys.stderr)
        return 2
    if args.repeats < 1 or args.steps < 1:
        parser.error("--repeats and --steps must be >= 1")
    started = time.perf_counter()
    setup = make_setup(args)
    device_name = torch.cuda.get_device_name() if setup.device.type == "cuda" else "cpu (smoke run)"
    versions = f"torch {torch.__version__}, diffusers {diffusers.__version__}, transformers {transformers.__version__}"
    print(f"{device_name}; {versions}", flush=True)

    preset = load_preset(setup.preset)
    frames = preset.num_frames + 1  # the reference rides along as the last frame
    latent = preset.resolution // 2 ** (len(preset.architecture["vae"]["block_out_channels"]) - 1)
    print(f"[1/4] building the {setup.preset} UNet with random weights on {setup.device} ...", flush=True)
    torch.manual_seed(0)
    unet = build_unet_skeleton(preset, device=setup.device)
    trainable = set(select_trainable(unet, update_motion=True))
    parameters = [p for name, p in unet.named_parameters() if name in trainable]
    # Pre-encoded batches never reach the VAE, text encoder or tokenizer, so none are built.
    components = VideoMakerComponents(preset, unet, None, None, None, make_scheduler())

    attentions, implementations = [], {}
    for attention in ATTENTIONS:
        ran = set_attention(unet, attention, frames)
        implementations[attention] = f"{ran}: {describe(unet)}"
        attentions.append(attention)
        print(f"  {attention} runs {implementations[attention]}", flush=True)

    print(f"[2/4] exactness, float32: merged vs paired, one PISA layer and one UNet forward, latent {latent}x{latent} ...", flush=True)
    exactness = check_exactness(unet, frames, latent, setup.device)
    for what in ("layer", "unet"):
        diff = exactness[f"{what}_max_abs_diff"]
        print(f"  {what}: max|merged - paired| = {diff:.2e} (max|paired| = {exactness[f'{what}_max_abs_output']:.2e})", flush=True)
        if not diff <= EXACTNESS_TOLERANCE:  # `not <=` also catches NaN
            print(f"WARNING: {what} merged vs paired differ by {diff:.2e} > {EXACTNESS_TOLERANCE:g}: NOT EXACT", flush=True)
    for what in ("out", "grad"):
        paired, merged = exactness[f"bf16_paired_{what}_error"], exactness[f"bf16_merged_{what}_error"]
        print(f"  layer bf16 {what}: max error vs float32, paired {paired:.2e}, merged {merged:.2e}", flush=True)
        if not merged <= 2 * paired:
            print(f"WARNING: merged bf16 {what} error {merged:.2e} is over 2x paired's {paired:.2e}", flush=True)

    precision = "bf16 autocast" if setup.train_precision == "bf16" else "float32"
    print(f"[3/4] training step, {precision}, {setup.warmup} warm-up + {setup.repeats} timed per configuration ...", flush=True)
    batch = training_batch(unet, frames, latent, setup.device)
    train = {}
    for attention in attentions:
        for checkpointing in (False, True):
            set_attention(unet, attention, frames)
            run = partial(time_training, components, parameters, batch, setup, checkpointing)
            train[attention, checkpointing] = out_of_memory_guard(run, unet)
            measured, error = train[attention, checkpointing]
            figures = error or f"{measured.median_s:.3f} s/step" + (f", peak {measured.peak_gib:.1f} GiB" if measured.peak_gib else "")
            print(f"  {attention} ckpt {'on' if checkpointing else 'off'}: {figures}", flush=True)
    unet.disable_gradient_checkpointing()

    print(f"[4/4] inference, {setup.steps} steps per video, {str(setup.infer_dtype).removeprefix('torch.')} weights ...", flush=True)
    if setup.infer_dtype != torch.float32:  # a no-op cast would still trigger diffusers' keep-in-fp32 warning
        unet.to(setup.infer_dtype)
    infer = {}
    for attention in attentions:
        set_attention(unet, attention, frames)
        infer[attention] = out_of_memory_guard(partial(time_inference, unet, frames, latent, setup), unet)
        measured, error = infer[attention]
        print(f"  {attention}: {error or f'{measured.median_s:.2f} s/video'}", flush=True)

    info = {
        "device": device_name,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "preset": setup.preset,
        "frames": frames,
        "latent": latent,
        "steps": setup.steps,
        "repeats": setup.repeats,
        "warmup": setup.warmup,
        "train_precision": "bf16 autocast over float32 weights" if setup.train_precision == "bf16" else "float32",
        "infer_dtype": str(setup.infer_dtype).removeprefix("torch."),
        "trainable_parameters": sum(p.numel() for p in parameters),
        "smoke": args.smoke,
    }
    rows = build_rows(attentions, train, infer)
    table = format_table(rows, info)
    wall_s = time.perf_counter() - started
    print(f"\n{table}")
    print(
        f"exactness (float32, merged vs paired): layer {exactness['layer']} max|diff| {exactness['layer_max_abs_diff']:.2e}, "
        f"UNet forward max|diff| {exactness['unet_max_abs_diff']:.2e}"
    )
    if not all(exactness[f"{what}_max_abs_diff"] <= EXACTNESS_TOLERANCE for what in ("layer", "unet")):
        print(f"WARNING: merged is NOT exact (max|diff| > {EXACTNESS_TOLERANCE:g}); its timings compare a different computation")
    print(f"{device_name}; {versions}; total wall time {wall_s:.0f} s", flush=True)
    if args.out:
        record = info | {
            "wall_s": wall_s,
            "implementations": implementations,
            "exactness": exactness,
            "rows": rows,
            "setup": asdict(setup) | {"device": str(setup.device), "infer_dtype": info["infer_dtype"]},
            "table": table,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
