"""DINO ViT-S/16 through transformers: the CLS token of the last hidden state (not the pooler).

The hub conversion of `facebook/dino-vits16` stores transformers' default LayerNorm epsilon
(1e-12) while the original DINO ViT uses 1e-6; the backend builds the original one by default.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from metrics.backends.base import check_images, state_dict_digest
from metrics.backends.registry import WeightSource, option_or_default, weight_at

if TYPE_CHECKING:
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DINO_LAYER_NORM_EPS = 1e-6  # every LayerNorm of the original DINO ViTs
RESIZES = ("pil", "torch")


class DINOEmbedder:
    """CLS embeddings of a transformers ViT such as `facebook/dino-vits16`.

    Frames are stretched to `image_size` x `image_size` (no crop) and normalised with ImageNet's
    mean and std. The default resize is the one of the author's evaluation (transformers'
    `ViTImageProcessor` of the time): Pillow's bilinear resize of the uint8 frame, then /255.

    Args:
        model (str, default "facebook/dino-vits16"): Hub id (read from the Hugging Face cache
            when offline) or local directory for `transformers.AutoModel.from_pretrained`.
        image_size (int, default 224): Side of the square model input.
        resize ("pil" or "torch", default "pil"): "pil": Pillow bilinear on the uint8 frame (the
            author's preprocessing); "torch": antialiased bilinear on float pixels on `device`
            (no rounding to uint8; differs from "pil" by up to one grey level per pixel).
        layer_norm_eps (float or "config", default 1e-6): Epsilon of every LayerNorm. 1e-6 is the
            original DINO ViT's; "config" keeps the value in the model's config.json (1e-12 in
            the hub conversion, which the author's evaluation used; on random ViT-S/16 weights
            the two give unit embeddings about 2e-5 apart).
        device (str, default "cpu"): Torch device.
        batch_size (int, default 32): Images per forward.

    Example:
        >>> dino = DINOEmbedder()  # facebook/dino-vits16 from the hub cache
        >>> dino.embed_images([frame]).shape
        (1, 384)
    """

    name = "transformers-dino"

    @classmethod
    def weights(cls, options: dict) -> list[WeightSource]:
        """The hub repo or folder `model` names."""
        return [weight_at("dino", option_or_default(cls, options, "model"), hub=True)]

    def __init__(
        self,
        model: str = "facebook/dino-vits16",
        *,
        image_size: int = 224,
        resize: Literal["pil", "torch"] = "pil",
        layer_norm_eps: float | Literal["config"] = DINO_LAYER_NORM_EPS,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        import torch
        import transformers

        if batch_size < 1 or image_size < 1:
            raise ValueError(f"`batch_size` and `image_size` must be >= 1, got {batch_size} and {image_size}.")
        if resize not in RESIZES:
            raise ValueError(f"`resize` must be one of {list(RESIZES)}, got {resize!r}.")
        if layer_norm_eps != "config" and (
            isinstance(layer_norm_eps, bool) or not isinstance(layer_norm_eps, (int, float)) or not layer_norm_eps > 0
        ):
            raise ValueError(f"`layer_norm_eps` must be a positive number or 'config', got {layer_norm_eps!r}.")
        overrides = {} if layer_norm_eps == "config" else {"layer_norm_eps": float(layer_norm_eps)}
        try:
            self.model = transformers.AutoModel.from_pretrained(model, add_pooling_layer=False, **overrides).to(device).eval()
        except OSError as error:
            raise FileNotFoundError(
                f"`model` {model!r} could not be loaded by transformers ({error}); pass a local directory "
                f"holding config.json and the weights of facebook/dino-vits16 on an offline machine."
            ) from error
        self.device = torch.device(device)
        self.image_size = image_size
        self.resize = resize
        self.batch_size = batch_size
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        self._description = {
            "name": self.name,
            "version": transformers.__version__,
            "model": model,
            "weights": model,
            "digest": state_dict_digest(self.model),
            "resize": f"{resize} bilinear {image_size}x{image_size}",
            "layer_norm_eps": self.model.config.layer_norm_eps,
        }

    def describe(self) -> dict:
        return dict(self._description)

    def pixel_values(self, images: list[np.ndarray]) -> torch.Tensor:
        """uint8 RGB images of one size -> normalised (N, 3, S, S) float tensor on the model's device."""
        import torch
        import torch.nn.functional as F
        from PIL import Image

        size = (self.image_size, self.image_size)
        if self.resize == "pil":
            resized = np.stack(
                [np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(size, Image.Resampling.BILINEAR)) for image in images]
            )
            batch = torch.from_numpy(resized).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        else:
            batch = torch.from_numpy(np.stack(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
            batch = F.interpolate(batch, size=size, mode="bilinear", antialias=True, align_corners=False)
        return (batch - self._mean) / self._std

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        images = check_images(images)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                # Frames of one video share a size; stack per image size so mixed inputs still work.
                for chunk in _same_size_runs(images[start : start + self.batch_size]):
                    hidden = self.model(pixel_values=self.pixel_values(chunk)).last_hidden_state
                    out.append(hidden[:, 0].float().cpu().numpy())
        return np.concatenate(out)


def _same_size_runs(images: list[np.ndarray]) -> list[list[np.ndarray]]:
    runs: list[list[np.ndarray]] = []
    for image in images:
        if runs and runs[-1][0].shape == image.shape:
            runs[-1].append(image)
        else:
            runs.append([image])
    return runs
