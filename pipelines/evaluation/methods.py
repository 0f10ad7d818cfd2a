"""The methods an evaluation can generate with: one `VideoGenerator` interface over each model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pipelines.evaluation.config import GenerationSettings, MethodConfig

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass
class GeneratedBatch:
    """uint8 frames `(N, F, H, W, 3)` and the settings that made them (for the JSON sidecars)."""

    frames: np.ndarray
    provenance: dict


class VideoGenerator:
    """A loaded method: references + prompts + seeds -> videos, with SPEC section 6 sampler settings."""

    def __init__(self, method: MethodConfig, settings: GenerationSettings):
        self.method = method
        self.settings = settings
        dtype = _DTYPES[settings.dtype]
        self.face_embedder = None
        if method.kind == "videomaker":
            from videomaker.pipeline import VideoMakerPipeline

            self.pipe = VideoMakerPipeline.from_preset(method.preset, checkpoint=method.checkpoint,
                                                       device=settings.device, dtype=dtype)
        else:
            from videomaker.baselines import IPAdapterBaseline

            options = {key: getattr(method, key) for key in ("weights", "weight_name", "subfolder", "image_encoder_folder", "scale")
                       if getattr(method, key) is not None}
            self.pipe = IPAdapterBaseline.from_preset(method.preset, variant=method.kind, device=settings.device,
                                                      dtype=dtype, **options)
            if method.kind == "ip-adapter-faceid":
                from metrics.backends import load_backend

                self.face_embedder = load_backend("face", method.face, device=settings.device)

    def _face_embeddings(self, references: list[np.ndarray]) -> list[np.ndarray]:
        from metrics.suite import largest_face_embedding

        embeddings = []
        for index, reference in enumerate(references):
            embedding = largest_face_embedding(self.face_embedder, reference)
            if embedding is None:
                raise ValueError(f"IP-Adapter-FaceID needs a face, and reference {index} of this batch has none.")
            embeddings.append(embedding)
        return embeddings

    def __call__(self, references: list[np.ndarray], prompts: list[str], seeds: list[int], negative_prompt: str) -> GeneratedBatch:
        kwargs = dict(seeds=seeds, negative_prompt=negative_prompt, num_inference_steps=self.settings.num_inference_steps,
                      guidance_scale=self.settings.guidance_scale, height=self.settings.size, width=self.settings.size,
                      progress=False)
        if self.face_embedder is not None:
            kwargs["face_embeddings"] = self._face_embeddings(references)
        out = self.pipe(references, prompts, **kwargs)
        provenance = {"method": self.method.name, "kind": self.method.kind, **out.provenance}
        return GeneratedBatch(np.asarray(out.frames), provenance)
