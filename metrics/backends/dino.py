"""DINO ViT-S/16 through transformers: the CLS token of the last hidden state (not the pooler)."""

from __future__ import annotations

import numpy as np

from metrics.backends.base import check_images, state_dict_digest

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DINOEmbedder:
    """CLS embeddings of a transformers ViT such as `facebook/dino-vits16`.

    Frames are resized to `image_size` x `image_size` (no crop, bilinear with antialiasing) and
    normalised with ImageNet's mean and std, as SPEC section 7 says.

    Args:
        model (str, default "facebook/dino-vits16"): Hub id or local directory for
            `transformers.AutoModel.from_pretrained`.
        image_size (int, default 224): Side of the square model input.
        device (str, default "cpu"): Torch device.
        batch_size (int, default 32): Images per forward.
    """

    name = "transformers-dino"

    def __init__(self, model: str = "facebook/dino-vits16", *, image_size: int = 224, device: str = "cpu", batch_size: int = 32):
        import torch
        import transformers

        if batch_size < 1 or image_size < 1:
            raise ValueError(f"`batch_size` and `image_size` must be >= 1, got {batch_size} and {image_size}.")
        try:
            self.model = transformers.AutoModel.from_pretrained(model, add_pooling_layer=False).to(device).eval()
        except OSError as error:
            raise FileNotFoundError(
                f"`model` {model!r} could not be loaded by transformers ({error}); pass a local directory "
                f"holding config.json and the weights of facebook/dino-vits16 on an offline machine."
            ) from error
        self.device = torch.device(device)
        self.image_size = image_size
        self.batch_size = batch_size
        self._mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)
        self._description = {
            "name": self.name,
            "version": transformers.__version__,
            "model": model,
            "weights": model,
            "digest": state_dict_digest(self.model),
        }

    def describe(self) -> dict:
        return dict(self._description)

    def pixel_values(self, images: list[np.ndarray]):
        """uint8 RGB images -> normalised (N, 3, S, S) float tensor on the model's device."""
        import torch
        import torch.nn.functional as F

        batch = torch.from_numpy(np.stack(images)).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        batch = F.interpolate(batch, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False)
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
