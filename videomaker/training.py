"""One VideoMaker optimisation step (docs/method.md, section 4), free of any distributed framework.

The Ray Train job wraps this with data loading, mixed precision, DDP and checkpointing; tests and
single-process experiments call it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def make_optimizer(parameters, *, lr: float = 1e-5, weight_decay: float = 1e-2) -> torch.optim.AdamW:
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


def training_step(
    components: VideoMakerComponents,
    batch: TrainingBatch,
    optimizer: torch.optim.Optimizer,
    *,
    generator: torch.Generator | None = None,
    config: GIRLConfig = GIRLConfig(),
    max_grad_norm: float = 1.0,
) -> TrainingStepOutput:
    """Encode, compute L = L_video + 0.1 L_reg, backpropagate, clip to `max_grad_norm`, step."""
    video, reference, text = encode_batch(components, batch)
    out = girl_loss(components.unet, components.scheduler, video, reference, text, generator=generator, config=config)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    parameters = [p for group in optimizer.param_groups for p in group["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    optimizer.step()
    return TrainingStepOutput(
        loss=out.loss.item(),
        loss_video=out.loss_video.item(),
        loss_reg=out.loss_reg.item(),
        grad_norm=grad_norm.item(),
        girl=out,
    )
