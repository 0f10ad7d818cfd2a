"""The VideoMaker training objective: GIRL + min-SNR (docs/method.md, section 4).

Tensor layout throughout: `(batch, channels, frames, height, width)`; the reference is the last
frame. Randomness comes only from the caller's `torch.Generator`, so a step is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler
from diffusers.utils.torch_utils import randn_tensor


@dataclass(frozen=True)
class GIRLConfig:
    """Loss hyper-parameters; defaults are the paper's.

    Args:
        girl: True for GIRL. False is the plain loss of the paper's ablation row without GIRL: the
            epsilon loss on the video frames only, the reference latent entering clean (no remind
            noise) and no L_reg. min-SNR weighting and CFG dropout apply in both.
        reg_weight: Weight of the reference-frame loss L_reg in L = L_video + reg_weight * L_reg.
        remind_factor: t' = floor(remind_factor * t), the remind-noise timestep of the reference.
        snr_gamma: min-SNR gamma for the video loss; None disables the weighting.
        drop_text: Probability that only the text is dropped (zero embedding).
        drop_reference: Probability that only the reference is dropped (zero latent).
        drop_both: Probability that both are dropped.
    """

    girl: bool = True
    reg_weight: float = 0.1
    remind_factor: float = 0.01
    snr_gamma: float | None = 5.0
    drop_text: float = 0.05
    drop_reference: float = 0.05
    drop_both: float = 0.05

    def __post_init__(self):
        shares = (self.drop_text, self.drop_reference, self.drop_both)
        if min(shares) < 0 or sum(shares) > 1:
            raise ValueError(
                f"Invalid GIRLConfig(drop_text={self.drop_text}, drop_reference={self.drop_reference}, "
                f"drop_both={self.drop_both}): each must be >= 0 and their sum <= 1."
            )
        if not 0 <= self.remind_factor < 1:
            raise ValueError(f"Invalid GIRLConfig(remind_factor={self.remind_factor}): must be in [0, 1).")


@dataclass
class GIRLOutput:
    """The loss, its parts and every random draw behind them (for logging and checking)."""

    loss: torch.Tensor
    loss_video: torch.Tensor
    loss_reg: torch.Tensor
    timesteps: torch.Tensor
    remind_timesteps: torch.Tensor
    text_dropped: torch.Tensor
    reference_dropped: torch.Tensor
    noise: torch.Tensor
    reference_noise: torch.Tensor


def remind_timesteps(timesteps: torch.Tensor, factor: float = 0.01) -> torch.Tensor:
    """t' = floor(factor * t) per sample: the small noise level of the reference frame."""
    return torch.floor(timesteps.double() * factor).to(timesteps.dtype)


def sample_condition_dropout(
    batch_size: int, generator: torch.Generator | None, config: GIRLConfig = GIRLConfig()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw per-sample CFG dropout: (text dropped, reference dropped), one exclusive case each.

    Returns:
        Two bool tensors of shape `(batch_size,)` on the generator's device.
    """
    device = generator.device if generator is not None else "cpu"
    u = torch.rand(batch_size, generator=generator, device=device)
    text_only = u < config.drop_text
    reference_only = (u >= config.drop_text) & (u < config.drop_text + config.drop_reference)
    both = (u >= config.drop_text + config.drop_reference) & (u < config.drop_text + config.drop_reference + config.drop_both)
    return text_only | both, reference_only | both


def min_snr_weights(scheduler: DDIMScheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """min(SNR(t), gamma) / SNR(t) for epsilon prediction (Hang et al. 2023)."""
    alphas_cumprod = scheduler.alphas_cumprod.to(timesteps.device, torch.float32)[timesteps]
    snr = alphas_cumprod / (1 - alphas_cumprod)
    return torch.clamp(snr, max=gamma) / snr


def girl_loss(
    unet: torch.nn.Module,
    scheduler: DDIMScheduler,
    video_latents: torch.Tensor,
    reference_latents: torch.Tensor,
    text_embeddings: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    config: GIRLConfig = GIRLConfig(),
) -> GIRLOutput:
    """One VideoMaker training loss evaluation (forward only; the caller runs backward).

    Args:
        unet: Callable `unet(sample, timestep, encoder_hidden_states=...)` returning an object with
            `.sample` or a tensor, shaped like `sample`.
        scheduler: Supplies `add_noise` and `alphas_cumprod` (the VideoMaker linear schedule).
        video_latents: `(B, C, 16, h, w)` scaled VAE latents of the target frames.
        reference_latents: `(B, C, 1, h, w)` scaled VAE latent of the reference image.
        text_embeddings: `(B, 77, D)` caption embeddings; repeated per frame here.
        generator: Source of every random draw.
        config: Loss weights and dropout shares.

    Returns:
        `GIRLOutput` with L = L_video + reg_weight * L_reg and its parts.
    """
    if video_latents.ndim != 5 or reference_latents.ndim != 5:
        raise ValueError(
            "`video_latents` and `reference_latents` must be (B, C, F, h, w); got "
            f"{tuple(video_latents.shape)} and {tuple(reference_latents.shape)}."
        )
    batch, _, frames, _, _ = video_latents.shape
    if reference_latents.shape[2] != 1 or reference_latents.shape[:2] != video_latents.shape[:2]:
        raise ValueError(
            f"`reference_latents` must be (B, C, 1, h, w) matching `video_latents` {tuple(video_latents.shape)}; "
            f"got {tuple(reference_latents.shape)}."
        )
    if text_embeddings.ndim != 3 or text_embeddings.shape[0] != batch:
        raise ValueError(f"`text_embeddings` must be (B={batch}, tokens, dim), got {tuple(text_embeddings.shape)}.")
    device = video_latents.device
    gen_device = generator.device if generator is not None else torch.device("cpu")

    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator, device=gen_device).to(device)
    reminds = remind_timesteps(timesteps, config.remind_factor) if config.girl else torch.zeros_like(timesteps)
    text_dropped, reference_dropped = sample_condition_dropout(batch, generator, config)
    text_dropped, reference_dropped = text_dropped.to(device), reference_dropped.to(device)
    noise = randn_tensor(video_latents.shape, generator=generator, device=device, dtype=video_latents.dtype)
    reference_noise = (
        randn_tensor(reference_latents.shape, generator=generator, device=device, dtype=reference_latents.dtype)
        if config.girl
        else torch.zeros_like(reference_latents)
    )

    # Dropped conditions become zeros; the reference is zeroed before its remind noise is added.
    keep_reference = (~reference_dropped).to(reference_latents.dtype).view(batch, 1, 1, 1, 1)
    keep_text = (~text_dropped).to(text_embeddings.dtype).view(batch, 1, 1)
    noisy_video = scheduler.add_noise(video_latents, noise, timesteps)
    noisy_reference = reference_latents * keep_reference
    if config.girl:
        noisy_reference = scheduler.add_noise(noisy_reference, reference_noise, reminds)
    sample = torch.cat([noisy_video, noisy_reference], dim=2)  # B, C, F+1, h, w
    text = (text_embeddings * keep_text).repeat_interleave(frames + 1, dim=0)  # (B (F+1)), 77, D

    prediction = unet(sample, timesteps, encoder_hidden_states=text)
    prediction = getattr(prediction, "sample", prediction).float()

    per_sample_video = F.mse_loss(prediction[:, :, :frames], noise.float(), reduction="none").mean(dim=(1, 2, 3, 4))
    if config.snr_gamma is not None:
        per_sample_video = per_sample_video * min_snr_weights(scheduler, timesteps, config.snr_gamma)
    loss_video = per_sample_video.mean()
    if config.girl:
        loss_reg = F.mse_loss(prediction[:, :, frames:], reference_noise.float())
        loss = loss_video + config.reg_weight * loss_reg
    else:
        loss_reg, loss = torch.zeros((), device=device), loss_video
    return GIRLOutput(
        loss=loss,
        loss_video=loss_video,
        loss_reg=loss_reg,
        timesteps=timesteps,
        remind_timesteps=reminds,
        text_dropped=text_dropped,
        reference_dropped=reference_dropped,
        noise=noise,
        reference_noise=reference_noise,
    )
