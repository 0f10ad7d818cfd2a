"""CLIP ViT-B/32 through open_clip: one image forward per frame serves CLIP-T, CLIP-I and T.Cons."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metrics.backends.base import check_images, file_digest, state_dict_digest

SCHEMAS = ("hf-hub:", "local-dir:")


class OpenCLIPEmbedder:
    """Image and text embeddings of an open_clip model, with CLIP's own preprocessing.

    Args:
        model (str, default "ViT-B-32"): open_clip architecture name (`open_clip.list_models()`),
            or `hf-hub:org/repo` / `local-dir:/path` holding `open_clip_config.json` and weights.
        pretrained (str, default "openai"): For an architecture name, a pretrained tag (downloaded
            or read from open_clip's cache) or the path of a local checkpoint file.
        device (str, default "cpu"): Torch device.
        batch_size (int, default 32): Images per forward.

    Example:
        >>> clip = OpenCLIPEmbedder()  # the paper's ViT-B-32 with OpenAI weights
        >>> clip.embed_images(frames).shape
        (16, 512)
    """

    name = "open_clip"

    def __init__(self, model: str = "ViT-B-32", pretrained: str = "openai", *, device: str = "cpu", batch_size: int = 32):
        import open_clip
        import torch

        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
        sourced_by_name = model.startswith(SCHEMAS)
        is_file = not sourced_by_name and Path(pretrained).expanduser().is_file()
        if not sourced_by_name:
            if model not in open_clip.list_models():
                raise ValueError(
                    f"`model` {model!r} is neither an open_clip architecture nor prefixed by one of {SCHEMAS}. "
                    f"Available: {open_clip.list_models()}"
                )
            if not is_file and pretrained not in open_clip.list_pretrained_tags_by_model(model):
                raise FileNotFoundError(
                    f"`pretrained` {pretrained!r} is neither a checkpoint file nor a pretrained tag of {model} "
                    f"(tags: {open_clip.list_pretrained_tags_by_model(model)}); on an offline machine copy the "
                    f"checkpoint file there and pass its path."
                )
        weights = None if sourced_by_name else (str(Path(pretrained).expanduser()) if is_file else pretrained)
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(model, pretrained=weights, device=device)
        except RuntimeError as error:
            if "download" not in str(error).lower():
                raise
            raise FileNotFoundError(
                f"open_clip could not fetch `pretrained` {pretrained!r} for {model} ({error}); on an offline machine "
                f"copy the checkpoint file (or its Hugging Face cache) there and pass its path."
            ) from error
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._description = {
            "name": self.name,
            "version": open_clip.__version__,
            "model": model,
            "weights": model if sourced_by_name else pretrained,
            "digest": file_digest(pretrained) if is_file else state_dict_digest(self.model),
        }

    def describe(self) -> dict:
        return dict(self._description)

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        import torch
        from PIL import Image

        images = check_images(images)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                pixels = torch.stack([self.preprocess(Image.fromarray(image)) for image in chunk]).to(self.device)
                out.append(self.model.encode_image(pixels).float().cpu().numpy())
        return np.concatenate(out)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"`texts` must be a non-empty list of strings, got {texts!r}.")
        with torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device)
            return self.model.encode_text(tokens).float().cpu().numpy()
