"""Text and image encoders shared by inference, training and the latent preprocessing stage."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from diffusers import AutoencoderKL
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer


@torch.no_grad()
def encode_prompts(tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, prompts: list[str]) -> torch.Tensor:
    """CLIP text embeddings `(len(prompts), 77, D)`: last hidden state, padded to 77 tokens."""
    tokens = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt")
    return text_encoder(tokens.input_ids.to(text_encoder.device))[0]


def images_to_tensor(images: Sequence[Image.Image | np.ndarray], size: tuple[int, int]) -> torch.Tensor:
    """PIL images or uint8 `(H, W, 3)` arrays -> float `(N, 3, H, W)` in [-1, 1], resized to `size` (h, w)."""
    height, width = size
    tensors = []
    for index, image in enumerate(images):
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"Image {index} must be a uint8 (H, W, 3) array, got dtype {image.dtype} shape {image.shape}.")
            image = Image.fromarray(image)
        if not isinstance(image, Image.Image):
            raise ValueError(f"Image {index} must be a PIL image or uint8 array, got {type(image).__name__}.")
        image = image.convert("RGB")
        if image.size != (width, height):
            image = image.resize((width, height), Image.BICUBIC)
        tensors.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
    return torch.stack(tensors).float() / 127.5 - 1.0


@torch.no_grad()
def encode_frames(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    """VAE latents, scaled, `(B, C, F, h, w)` from pixels `(B, F, 3, H, W)` in [-1, 1].

    The latent is the posterior mode: VideoMaker encodes the reference without noise, and using
    the mode for the video too makes pre-encoded and on-the-fly training batches identical.
    """
    if pixels.ndim != 5 or pixels.shape[2] != 3:
        raise ValueError(f"`pixels` must be (B, F, 3, H, W) in [-1, 1], got {tuple(pixels.shape)}.")
    batch, frames = pixels.shape[:2]
    latents = vae.encode(pixels.flatten(0, 1).to(vae.device, vae.dtype)).latent_dist.mode()
    latents = latents * vae.config.scaling_factor
    return latents.unflatten(0, (batch, frames)).permute(0, 2, 1, 3, 4)


@torch.no_grad()
def decode_latents(vae: AutoencoderKL, latents: torch.Tensor) -> np.ndarray:
    """uint8 frames `(B, F, H, W, 3)` from scaled latents `(B, C, F, h, w)`, decoded frame by frame."""
    batch, _, frames = latents.shape[:3]
    flat = latents.permute(0, 2, 1, 3, 4).flatten(0, 1) / vae.config.scaling_factor
    images = torch.cat([vae.decode(chunk.to(vae.dtype)).sample for chunk in flat.split(8)])
    images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).unflatten(0, (batch, frames)).cpu().numpy()
