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
    """A loaded method: references + prompts + seeds -> videos, with docs/method.md, section 6 sampler settings."""

    def __init__(self, method: MethodConfig, settings: GenerationSettings, tracking_uri: str | None = None) -> None:
        self.method = method
        self.settings = settings
        dtype = _DTYPES[settings.dtype]
        self.face_embedder = None
        if method.kind == "videomaker":
            from pipelines.registry import download_checkpoint, is_model_uri
            from videomaker.pipeline import VideoMakerPipeline

            checkpoint = method.checkpoint
            if is_model_uri(checkpoint):  # each actor fetches the version from the registry: no shared disk needed
                import tempfile

                with tempfile.TemporaryDirectory(prefix="videomaker-version-") as scratch:
                    local = download_checkpoint(checkpoint, tracking_uri, scratch)
                    self.pipe = VideoMakerPipeline.from_preset(
                        method.preset, checkpoint=local, device=settings.device, dtype=dtype, switches=method.switches
                    )
                self.pipe.checkpoint = checkpoint  # sidecars name the version, not the download
            else:
                self.pipe = VideoMakerPipeline.from_preset(
                    method.preset, checkpoint=checkpoint, device=settings.device, dtype=dtype, switches=method.switches
                )
        else:
            from videomaker.baselines import IPAdapterBaseline

            keys = ("weights", "weight_name", "subfolder", "image_encoder_folder", "scale", "motion_adapter", "reference_size")
            options = {key: getattr(method, key) for key in keys if getattr(method, key) is not None}
            if method.kind == "ip-adapter-faceid":
                options |= {"lora_weight_name": method.lora_weight_name, "lora_scale": method.lora_scale}
            self.pipe = IPAdapterBaseline.from_preset(method.preset, variant=method.kind, device=settings.device, dtype=dtype, **options)
            if method.kind == "ip-adapter-faceid":
                from metrics.backends import load_backend

                self.face_embedder = load_backend("face", method.face, device=settings.device)

    def _face_embeddings(self, references: list[np.ndarray]) -> list[np.ndarray]:
        """One embedding per reference: its largest face, after the baseline's reference stretch.

        `method.face_embedding_protocol` `paper` repeats the author's FaceID script (the 640-px RGB
        array handed to insightface, which expects BGR; the last of the faces sorted by box area).
        """
        from metrics.suite import protocol_face_embedding

        embeddings = []
        for index, reference in enumerate(references):
            image = np.asarray(self.pipe.prepare_reference(reference), dtype=np.uint8)
            embedding = protocol_face_embedding(
                self.face_embedder, image, protocol=self.method.face_embedding_protocol, reference=False
            )  # a frame's rule: no 512 resize, largest face
            if embedding is None:
                raise ValueError(f"IP-Adapter-FaceID needs a face, and reference {index} of this batch has none.")
            embeddings.append(embedding)
        return embeddings

    def __call__(self, references: list[np.ndarray], prompts: list[str], seeds: list[int], negative_prompt: str) -> GeneratedBatch:
        kwargs = dict(
            seeds=seeds,
            negative_prompt=negative_prompt,
            num_inference_steps=self.settings.num_inference_steps,
            guidance_scale=self.settings.guidance_scale,
            height=self.settings.size,
            width=self.settings.size,
            progress=False,
        )
        if self.method.kind != "videomaker":
            kwargs["generator_device"] = self.method.generator_device
        if self.face_embedder is not None:
            kwargs["face_embeddings"] = self._face_embeddings(references)
        out = self.pipe(references, prompts, **kwargs)
        provenance = {"method": self.method.name, "kind": self.method.kind, **out.provenance}
        if self.face_embedder is not None:
            provenance["face_embedding_protocol"] = self.method.face_embedding_protocol
        return GeneratedBatch(np.asarray(out.frames), provenance)
