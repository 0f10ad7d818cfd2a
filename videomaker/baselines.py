"""IP-Adapter baselines on the same AnimateDiff base, run by diffusers as in the paper's comparison.

The adapters load through diffusers' own `load_ip_adapter` (hub id or staged directory) onto the
preset's stock motion UNet (no PISA) and sample with VideoMaker's schedule and settings (SPEC 6),
so differences in the comparison come from the method, not from the sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AnimateDiffPipeline

from videomaker.loading import load_components
from videomaker.pipeline import NEGATIVE_PROMPT_HUMAN, VideoMakerOutput

IP_ADAPTER_VARIANTS = ("ip-adapter", "ip-adapter-plus", "ip-adapter-faceid")
FACEID_EMBEDDING_DIM = 512  # insightface ArcFace (buffalo_l) embeddings


@dataclass(frozen=True)
class AdapterSource:
    """Where a variant's SD1.5 weights live on the hub: the defaults of `IPAdapterBaseline.from_preset`."""

    weights: str
    subfolder: str | None
    weight_name: str
    image_encoder_folder: str | None


DEFAULT_SOURCES = {
    "ip-adapter": AdapterSource("h94/IP-Adapter", "models", "ip-adapter_sd15.safetensors", "image_encoder"),
    "ip-adapter-plus": AdapterSource("h94/IP-Adapter", "models", "ip-adapter-plus_sd15.safetensors", "image_encoder"),
    # FaceID projects a face embedding the caller computes; it needs no CLIP image encoder. The .bin
    # also holds a LoRA, which diffusers applies only with peft (not installed, so it is skipped with a
    # warning) and numbers over all `attn_processors`, motion modules included, on this UNet.
    "ip-adapter-faceid": AdapterSource("h94/IP-Adapter-FaceID", None, "ip-adapter-faceid_sd15.bin", None),
}


def _staging_hint(variant: str) -> str:
    """The command that stages a variant's default files for machines without hub access."""
    source = DEFAULT_SOURCES[variant]
    prefix = f"{source.subfolder}/" if source.subfolder else ""
    files = f'"{prefix}{source.weight_name}"'
    if source.image_encoder_folder:
        files += f' "{prefix}{source.image_encoder_folder}/*"'
    return f"`hf download {source.weights} --include {files} --local-dir DIR`, then pass `weights=DIR`"


class IPAdapterBaseline:
    """IP-Adapter, IP-Adapter-Plus or IP-Adapter-FaceID on AnimateDiff, one seeded video per prompt.

    Example:
        >>> baseline = IPAdapterBaseline.from_preset("paper", variant="ip-adapter", weights="h94/IP-Adapter")
        >>> out = baseline([reference], ["A person wearing a blue hoodie."], seeds=[0])
    """

    def __init__(self, pipe: AnimateDiffPipeline, *, preset, variant: str, provenance: dict):
        self.pipe = pipe
        self.preset = preset
        self.variant = variant
        self.provenance = provenance

    @classmethod
    def from_preset(
        cls,
        preset: str | Path = "tiny",
        *,
        variant: str,
        weights: str | Path | None = None,
        weight_name: str | None = None,
        subfolder: str | None = None,
        image_encoder_folder: str | None = None,
        scale: float = 1.0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> IPAdapterBaseline:
        """Load a preset's components and one IP-Adapter variant with diffusers' `load_ip_adapter`.

        Args:
            preset: Shipped preset name or saved preset directory (the AnimateDiff base).
            variant: One of `IP_ADAPTER_VARIANTS`.
            weights: Hub id or local directory laid out like it; None: the variant's hub repository
                (`DEFAULT_SOURCES`).
            weight_name, subfolder, image_encoder_folder: As in `load_ip_adapter`; None takes the
                variant's default (pass `subfolder=""` for weights at the directory's root).
                `image_encoder_folder` is relative to `subfolder` unless it contains a "/".
            scale: IP-Adapter scale; 0 turns the adapter off.
            device, dtype: Where and in which precision the models run.
        """
        if variant not in DEFAULT_SOURCES:
            raise ValueError(f"`variant` must be one of {list(IP_ADAPTER_VARIANTS)}, got {variant!r}.")
        source = DEFAULT_SOURCES[variant]
        weights = str(weights) if weights is not None else source.weights
        weight_name = weight_name or source.weight_name
        subfolder = source.subfolder if subfolder is None else subfolder
        image_encoder_folder = image_encoder_folder or source.image_encoder_folder

        c = load_components(preset, device=device, dtype=dtype)
        pipe = AnimateDiffPipeline(
            vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet, motion_adapter=None,
            scheduler=c.scheduler,
        )
        try:
            pipe.load_ip_adapter(
                weights, subfolder=subfolder, weight_name=weight_name, image_encoder_folder=image_encoder_folder
            )
        except OSError as err:
            raise OSError(
                f"Could not load {variant!r} weights {weight_name!r} from {weights!r} (subfolder={subfolder!r}, "
                f"image_encoder_folder={image_encoder_folder!r}): {err}\nOn a machine without hub access, stage "
                f"them first, e.g. {_staging_hint(variant)}."
            ) from err
        pipe.set_ip_adapter_scale(scale)
        provenance = {
            "method": cls.__name__, "variant": variant, "weights": weights, "subfolder": subfolder,
            "weight_name": weight_name, "scale": scale, "preset": c.preset.name,
        }
        return cls(pipe, preset=c.preset, variant=variant, provenance=provenance)

    def check_inputs(self, reference_images, prompts, seeds, face_embeddings):
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"`prompts` must be a non-empty list of strings, got {prompts!r}.")
        for name, values in (("reference_images", reference_images), ("seeds", seeds)):
            if len(values) != len(prompts):
                raise ValueError(
                    f"`{name}` has {len(values)} entries but `prompts` has {len(prompts)}; give one per prompt."
                )
        if self.variant != "ip-adapter-faceid":
            if face_embeddings is not None:
                raise ValueError(
                    f"`face_embeddings` is only used by variant 'ip-adapter-faceid', not {self.variant!r}."
                )
            return
        if face_embeddings is None or len(face_embeddings) != len(prompts):
            got = None if face_embeddings is None else f"{len(face_embeddings)} entries"
            raise ValueError(
                f"`face_embeddings` must give one {FACEID_EMBEDDING_DIM}-d insightface embedding per prompt for "
                f"variant 'ip-adapter-faceid', got {got}."
            )
        for index, embedding in enumerate(face_embeddings):
            if np.shape(embedding) != (FACEID_EMBEDDING_DIM,):
                raise ValueError(
                    f"`face_embeddings[{index}]` must have shape ({FACEID_EMBEDDING_DIM},), got {np.shape(embedding)}."
                )

    def _face_embeds(self, embedding: np.ndarray, guidance_scale: float) -> list[torch.Tensor]:
        """diffusers' FaceID layout: one (2, 1, 1, D) tensor, [zeros (uncond), normalised embedding]."""
        unet = self.pipe.unet
        positive = torch.as_tensor(np.asarray(embedding), dtype=torch.float32)
        positive = (positive / positive.norm()).reshape(1, 1, 1, -1).to(unet.device, unet.dtype)
        if guidance_scale > 1:  # diffusers' own test for classifier-free guidance
            return [torch.cat([torch.zeros_like(positive), positive])]
        return [positive]

    @torch.no_grad()
    def __call__(
        self,
        reference_images: list,
        prompts: list[str],
        *,
        seeds: list[int] | None = None,
        negative_prompt: str = NEGATIVE_PROMPT_HUMAN,
        num_inference_steps: int = 30,
        guidance_scale: float = 8.0,
        height: int | None = None,
        width: int | None = None,
        face_embeddings: list[np.ndarray] | None = None,
        progress: bool = True,
    ) -> VideoMakerOutput:
        """Generate one video per (reference, prompt, seed), each in its own diffusers call.

        Args:
            reference_images: PIL images or uint8 `(H, W, 3)` arrays, one per prompt; the image
                variants encode them with CLIP, FaceID ignores them (see `face_embeddings`).
            prompts: Text prompts.
            seeds: One per video, each with its own CPU generator, so a video does not depend on
                the rest of the batch. Defaults to 0, 1, 2, ...
            negative_prompt, num_inference_steps, guidance_scale: As `VideoMakerPipeline` (DDIM, eta 0).
            height, width: Output size; default the preset's resolution.
            face_embeddings: FaceID only: one insightface embedding `(512,)` per prompt (normalised here).
            progress: Show diffusers' progress bar.
        """
        height = height or self.preset.resolution
        width = width or self.preset.resolution
        seeds = list(range(len(prompts))) if seeds is None else list(seeds)
        self.check_inputs(reference_images, prompts, seeds, face_embeddings)
        self.pipe.set_progress_bar_config(disable=not progress)

        videos = []
        for index, (prompt, seed) in enumerate(zip(prompts, seeds)):
            if face_embeddings is not None:
                adapter_input = {"ip_adapter_image_embeds": self._face_embeds(face_embeddings[index], guidance_scale)}
            else:
                adapter_input = {"ip_adapter_image": reference_images[index]}
            result = self.pipe(
                prompt=prompt, negative_prompt=negative_prompt, num_frames=self.preset.num_frames,
                height=height, width=width, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                eta=0.0, generator=torch.Generator("cpu").manual_seed(seed), output_type="np", **adapter_input,
            )
            videos.append(result.frames[0])  # F, H, W, 3 floats in [0, 1]
        frames = (np.stack(videos) * 255).round().clip(0, 255).astype(np.uint8)
        return VideoMakerOutput(
            frames=frames,
            prompts=list(prompts),
            seeds=seeds,
            provenance=self.provenance | {
                "negative_prompt": negative_prompt,
                "num_inference_steps": num_inference_steps,
                "guidance_scale": guidance_scale,
                "height": height,
                "width": width,
                "scheduler": "DDIM",
            },
        )
