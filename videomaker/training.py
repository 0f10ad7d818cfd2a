"""One VideoMaker optimisation step (docs/method.md, section 4), free of any distributed framework.

A step is `micro_step` once per micro-batch (encode, GIRL loss under autocast, the non-finite check,
backward) and then `optimizer_step` (unscale, clip, set the learning rate `lr_at` gives, step, EMA).
The Ray Train job (`pipelines/training/loop.py`) calls exactly these two and adds only distribution:
data shards, DDP (its `no_sync` between micro-batches), checkpoints and reports. `training_step` is
the same for a single process:

    parameters = prepare_for_training(components)
    optimizer = make_optimizer(parameters)
    out = training_step(components, batch, optimizer, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from videomaker.encoding import encode_frames, encode_prompts
from videomaker.girl import GIRLConfig, GIRLOutput, girl_loss
from videomaker.loading import VideoMakerComponents
from videomaker.pisa import PISASwitches, install_pisa
from videomaker.trainable import select_trainable


@dataclass
class TrainingBatch:
    """A batch either as pixels/captions or pre-encoded (the preprocess job's `encode_latents`).

    Attributes:
        frames: `(B, 16, 3, H, W)` target frames in [-1, 1], or None when `video_latents` is given.
        reference: `(B, 1, 3, H, W)` subject-highlighted reference in [-1, 1], or None.
        captions: B captions, or None when `text_embeddings` is given.
        video_latents: `(B, 4, 16, h, w)` scaled latents.
        reference_latents: `(B, 4, 1, h, w)` scaled latents.
        text_embeddings: `(B, 77, D)`.
    """

    frames: torch.Tensor | None = None
    reference: torch.Tensor | None = None
    captions: list[str] | None = None
    video_latents: torch.Tensor | None = None
    reference_latents: torch.Tensor | None = None
    text_embeddings: torch.Tensor | None = None

    def __post_init__(self):
        for encoded, raw in (("video_latents", "frames"), ("reference_latents", "reference"), ("text_embeddings", "captions")):
            if (getattr(self, encoded) is None) == (getattr(self, raw) is None):
                raise ValueError(f"TrainingBatch needs exactly one of `{raw}` and `{encoded}`.")


@dataclass
class TrainingStepOutput:
    loss: float
    loss_video: float
    loss_reg: float
    grad_norm: float
    girl: GIRLOutput


def prepare_for_training(components: VideoMakerComponents, switches: PISASwitches = PISASwitches()) -> list[torch.nn.Parameter]:
    """Install PISA with `switches`, freeze all but the trainable parameters, return those."""
    install_pisa(components.unet, switches, num_frames=components.preset.num_frames + 1)
    names = set(select_trainable(components.unet, update_motion=switches.update_motion))
    components.unet.train()
    return [p for n, p in components.unet.named_parameters() if n in names]


def make_optimizer(parameters: Iterable[torch.nn.Parameter], *, lr: float = 1e-5, weight_decay: float = 1e-2) -> torch.optim.AdamW:
    """AdamW with the paper's recipe (betas 0.9/0.999, eps 1e-8)."""
    return torch.optim.AdamW(parameters, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)


@torch.no_grad()
def encode_batch(components: VideoMakerComponents, batch: TrainingBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(video latents, reference latents, text embeddings), encoding whatever is not encoded yet.

    Latents are posterior modes (no sampling noise), so a batch pre-encoded by the preprocess job
    trains exactly like the same batch encoded here, and the reference matches inference.
    """
    c = components
    video = batch.video_latents if batch.video_latents is not None else encode_frames(c.vae, batch.frames)
    reference = batch.reference_latents if batch.reference_latents is not None else encode_frames(c.vae, batch.reference)
    text = batch.text_embeddings if batch.text_embeddings is not None else encode_prompts(c.tokenizer, c.text_encoder, batch.captions)
    return video.to(c.device, c.dtype), reference.to(c.device, c.dtype), text.to(c.device, c.dtype)


MixedPrecision = Literal["bf16", "fp16", "no"]
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": None}


def make_grad_scaler(device: torch.device | str, mixed_precision: MixedPrecision) -> torch.amp.GradScaler:
    """The loss scaler of `mixed_precision`: on for fp16 (whose small gradients underflow), a pass-through otherwise."""
    if mixed_precision not in AUTOCAST_DTYPES:
        raise ValueError(f"`mixed_precision` {mixed_precision!r}: use one of {sorted(AUTOCAST_DTYPES)}.")
    return torch.amp.GradScaler(torch.device(device).type, enabled=mixed_precision == "fp16")


def lr_at(step: int, *, lr: float, warmup_steps: int = 0) -> float:
    """The learning rate of optimizer step `step` (1-based): linear warm-up to `lr` over `warmup_steps`, then `lr`.

    A pure function of the step, so a resumed run needs no scheduler state.

    Example:
        >>> [lr_at(s, lr=1.0, warmup_steps=4) for s in (1, 2, 4, 9)]
        [0.25, 0.5, 1.0, 1.0]
    """
    if step < 1:
        raise ValueError(f"`step` {step}: optimizer steps count from 1.")
    if warmup_steps < 0:
        raise ValueError(f"`warmup_steps` {warmup_steps}: must be >= 0.")
    return lr * min(1.0, step / warmup_steps) if warmup_steps else lr


class EMA:
    """Exponential moving average of the trainable parameters, kept in float32."""

    def __init__(self, named_parameters: dict[str, torch.nn.Parameter], decay: float) -> None:
        self.decay = decay
        self.shadow = {name: p.detach().float().clone() for name, p in named_parameters.items()}

    @torch.no_grad()
    def update(self, named_parameters: dict[str, torch.nn.Parameter]) -> None:
        for name, parameter in named_parameters.items():
            self.shadow[name].lerp_(parameter.detach().float(), 1.0 - self.decay)


@dataclass
class MicroStepOutput:
    """One micro-batch's loss; `skipped` when the non-finite hook dropped it (no backward ran)."""

    girl: GIRLOutput
    skipped: bool = False


def micro_step(
    components: VideoMakerComponents,
    batch: TrainingBatch,
    *,
    model: Callable | None = None,
    generator: torch.Generator | None = None,
    config: GIRLConfig = GIRLConfig(),
    mixed_precision: MixedPrecision = "no",
    scaler: torch.amp.GradScaler | None = None,
    grad_accumulation: int = 1,
    skip_batch: Callable[[torch.Tensor], bool] | None = None,
) -> MicroStepOutput:
    """Forward and backward of one micro-batch; gradients add up in `.grad` until `optimizer_step`.

    Args:
        components: The models; `components.unet` is trained.
        batch: Pixels and captions, or pre-encoded latents (encoded here without gradients).
        model: What runs the UNet forward, e.g. a DDP wrapper of `components.unet`; default the UNet.
        generator: Source of every random draw of the loss (timesteps, noise, CFG dropout).
        config: The loss.
        mixed_precision: `bf16` / `fp16` run the forward under one autocast context of that dtype;
            `no` in the components' dtype. Backward runs outside it, in the dtypes the forward chose.
        scaler: fp16's loss scaler (`make_grad_scaler`); None or a disabled one passes the loss through.
        grad_accumulation: Micro-batches per optimizer step; the loss is divided by it so the
            accumulated gradient is the mean over micro-batches.
        skip_batch: Called with the loss before backward; True drops this micro-batch and every
            gradient accumulated for the step so far (the caller's non-finite policy, which may raise).

    Returns:
        `MicroStepOutput` with the loss and its draws.
    """
    dtype = AUTOCAST_DTYPES[mixed_precision]
    video, reference, text = encode_batch(components, batch)
    with torch.autocast(components.device.type, dtype=dtype, enabled=dtype is not None):
        out = girl_loss(
            model if model is not None else components.unet,
            components.scheduler,
            video,
            reference,
            text,
            generator=generator,
            config=config,
        )
    if skip_batch is not None and skip_batch(out.loss):
        for parameter in components.unet.parameters():
            parameter.grad = None
        return MicroStepOutput(out, skipped=True)
    loss = out.loss / grad_accumulation
    (scaler.scale(loss) if scaler is not None else loss).backward()
    return MicroStepOutput(out)


def optimizer_step(
    optimizer: torch.optim.Optimizer,
    *,
    max_grad_norm: float = 1.0,
    lr: float | None = None,
    scaler: torch.amp.GradScaler | None = None,
    ema: EMA | None = None,
    named_parameters: dict[str, torch.nn.Parameter] | None = None,
    clear_grads: bool = True,
) -> float:
    """Unscale, clip to `max_grad_norm`, step with learning rate `lr` (None keeps the optimizer's), update the EMA.

    `ema` needs `named_parameters` (the trainable ones it averages). `clear_grads=False` leaves the
    step's gradients in `.grad` for inspection. Returns the gradient norm before clipping.
    """
    if ema is not None and named_parameters is None:
        raise ValueError("`ema` needs `named_parameters`, the trainable parameters it averages.")
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm).item()
    if lr is not None:
        for group in optimizer.param_groups:
            group["lr"] = lr
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if clear_grads:
        optimizer.zero_grad(set_to_none=True)
    if ema is not None:
        ema.update(named_parameters)
    return grad_norm


def training_step(
    components: VideoMakerComponents,
    batch: TrainingBatch | Sequence[TrainingBatch],
    optimizer: torch.optim.Optimizer,
    *,
    generator: torch.Generator | None = None,
    config: GIRLConfig = GIRLConfig(),
    max_grad_norm: float = 1.0,
    mixed_precision: MixedPrecision = "no",
    scaler: torch.amp.GradScaler | None = None,
    lr: float | None = None,
) -> TrainingStepOutput:
    """One optimizer step in one process: `micro_step` per micro-batch of `batch` (a list accumulates), then
    `optimizer_step`, as the Ray job does. L = L_video + 0.1 L_reg; the gradients stay in `.grad` afterwards.

    The loss, its parts and `girl` are those of the last micro-batch; `grad_norm` is before clipping.
    """
    batches = [batch] if isinstance(batch, TrainingBatch) else list(batch)
    if not batches:
        raise ValueError("`batch` is an empty list; pass a TrainingBatch or a list of micro-batches.")
    if scaler is None and mixed_precision == "fp16":
        scaler = make_grad_scaler(components.device, mixed_precision)
    optimizer.zero_grad(set_to_none=True)
    for micro in batches:
        out = micro_step(
            components,
            micro,
            generator=generator,
            config=config,
            mixed_precision=mixed_precision,
            scaler=scaler,
            grad_accumulation=len(batches),
        ).girl
    grad_norm = optimizer_step(optimizer, max_grad_norm=max_grad_norm, lr=lr, scaler=scaler, clear_grads=False)
    return TrainingStepOutput(
        loss=out.loss.item(),
        loss_video=out.loss_video.item(),
        loss_reg=out.loss_reg.item(),
        grad_norm=grad_norm,
        girl=out,
    )
