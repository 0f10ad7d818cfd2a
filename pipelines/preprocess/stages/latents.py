"""Optional: VAE latents of the clip and reference and the caption's text embeddings, so training
can skip the VAE and text encoder. Uses the same encoders (posterior mode) as on-the-fly training."""

from __future__ import annotations

import numpy as np
import torch

from metrics.io import decode_image
from pipelines.preprocess.stages.base import RowStage
from videomaker.encoding import encode_frames, encode_prompts, images_to_tensor
from videomaker.loading import load_components


def to_fp16_bytes(tensor: torch.Tensor) -> tuple[bytes, list[int]]:
    array = tensor.detach().cpu().to(torch.float16).numpy()
    return array.astype("<f2").tobytes(), list(array.shape)


class EncodeLatentsStage(RowStage):
    name = "encode_latents"

    def __init__(self, *, preset: str, device: str | None = None) -> None:
        self.preset = preset
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")  # the actor's GPU when it has one
        self.components = load_components(preset, device=device)

    def process(self, row: dict) -> None:
        c = self.components
        size = (row["height"], row["width"])
        frames = images_to_tensor([decode_image(f) for f in row["frames"]], size).unsqueeze(0)
        reference = images_to_tensor([decode_image(row["reference_png"])], size).unsqueeze(0)
        video_latents = encode_frames(c.vae, frames)[0]
        reference_latents = encode_frames(c.vae, reference)[0]
        text = encode_prompts(c.tokenizer, c.text_encoder, [row["caption"]])[0]
        row["video_latents"], row["latent_shape"] = to_fp16_bytes(video_latents)
        row["reference_latents"], _ = to_fp16_bytes(reference_latents)
        row["text_embeddings"], row["text_embedding_shape"] = to_fp16_bytes(text)
        row["latent_preset"] = self.preset


def latents_from_bytes(data: bytes, shape: list[int]) -> np.ndarray:
    """Inverse of the stored encoding: float16 array of `shape`."""
    return np.frombuffer(data, dtype="<f2").reshape(shape)
