"""VideoMaker inference: reference image + prompt + seed -> 16 frames (docs/method.md, section 6)."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from videomaker.checkpoint import load_checkpoint
from videomaker.encoding import decode_latents, encode_frames, encode_prompts, images_to_tensor
from videomaker.loading import VideoMakerComponents, load_components
from videomaker.pisa import PISASwitches, install_pisa
from videomaker.references import prepare_reference

NEGATIVE_PROMPT_HUMAN = (
    "semi-realistic, cgi, 3d, render, sketch, cartoon, drawing, anime, text, close up, cropped, out of frame, "
    "worst quality, low quality, jpeg artifacts, ugly, duplicate, morbid, mutilated, extra fingers, mutated hands, "
    "poorly drawn hands, poorly drawn face, mutation, deformed, blurry, dehydrated, bad anatomy, bad proportions, "
    "extra limbs, cloned face, disfigured, gross proportions, malformed limbs, missing arms, missing legs, extra "
    "arms, extra legs, fused fingers, too many fingers, long neck"
)
NEGATIVE_PROMPT_OBJECT = "asymmetry, worst quality, low quality, illustration, 3d, 2d, painting, cartoons, sketch"
# The one negative prompt the authors' benchmark-generation script used for every subject; the
# evaluation configs that reproduce the published tables set it (`generation.negative_prompt`).
NEGATIVE_PROMPT_BENCHMARK = (
    "asymmetry, worst quality, low quality, illustration, 3d, 2d, painting, cartoons, sketch, multiple people, "
    "text on the screen, nobody, awkward angles, Facial blur"
)


@dataclass
class VideoMakerOutput:
    """Generated videos and what produced them.

    Attributes:
        frames: uint8 array `(num_videos, num_frames, height, width, 3)`.
        prompts, seeds: Per video, in order.
        provenance: Preset, switches, checkpoint, sampler settings.
    """

    frames: np.ndarray
    prompts: list[str]
    seeds: list[int]
    provenance: dict = field(default_factory=dict)


class VideoMakerPipeline:
    """Zero-shot customized video generation with PISA on AnimateDiff.

    Example:
        >>> pipe = VideoMakerPipeline.from_preset("tiny")
        >>> out = pipe([reference], ["A person wearing a blue hoodie."], seeds=[0], num_inference_steps=2)
        >>> out.frames.shape
        (1, 16, 64, 64, 3)
    """

    def __init__(
        self,
        components: VideoMakerComponents,
        *,
        switches: PISASwitches = PISASwitches(),
        checkpoint: str | None = None,
        checkpoint_report: dict | None = None,
        trained_switches: PISASwitches | None = None,
    ) -> None:
        self.components = components
        self.switches = switches
        self.trained_switches = trained_switches or switches  # the checkpoint's, when inference overrides them
        self.checkpoint = checkpoint
        self.checkpoint_report = checkpoint_report
        self.num_frames = components.preset.num_frames
        install_pisa(components.unet, switches, num_frames=self.num_frames + 1)

    @classmethod
    def from_preset(
        cls,
        preset: str | Path = "tiny",
        *,
        checkpoint: str | Path | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        switches: PISASwitches | dict | None = None,
    ) -> VideoMakerPipeline:
        """Load a preset and, optionally, trained weights (their switches come from the checkpoint).

        Args:
            preset: Preset name or saved preset directory.
            checkpoint: A checkpoint directory of this project, a released-format file of the
                authors (`human_pytorch_model.bin`, `object_pytorch_model.bin`), a directory holding
                one, or `hf:SugerWu/VideoMaker/<file>`; see `videomaker.checkpoint.load_checkpoint`.
                Released files carry the final model's switches and must fit the preset's UNet
                (the published ones fit preset `paper`).
            device, dtype: Where and in what precision the modules run.
            switches: Inference switches overriding the checkpoint's (a `PISASwitches` or the fields
                to change, e.g. `{"ref_in_motion": False}`: the authors' variant of the ablation rows
                without motion training, which skipped the reference in temporal attention at inference).
        """
        components = load_components(preset, device=device, dtype=dtype)
        state = load_checkpoint(checkpoint) if checkpoint is not None else None
        trained = state.switches if state is not None else PISASwitches()
        if isinstance(switches, dict):
            switches = dataclasses.replace(trained, **switches)
        if state is None:
            return cls(components, switches=switches or trained)
        report = state.apply_to(components.unet, preset=components.preset.name)
        return cls(components, switches=switches or trained, checkpoint=str(checkpoint), checkpoint_report=report, trained_switches=trained)

    def prepare_reference_pixels(self, reference_images: list, height: int, width: int) -> torch.Tensor:
        """References as the released code feeds them: stretched to `(height, width)`, `(N, 3, H, W)` in [-1, 1].

        Load files with `videomaker.references.load_reference` first (EXIF orientation, alpha on white).
        """
        return images_to_tensor([prepare_reference(image, (height, width)) for image in reference_images], (height, width))

    def check_inputs(
        self,
        reference_images: list,
        prompts: list[str],
        seeds: list[int],
        negative_prompt: str,
        num_inference_steps: int,
        guidance_scale: float,
        height: int,
        width: int,
    ) -> None:
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"`prompts` must be a non-empty list of strings, got {prompts!r}.")
        if len(reference_images) != len(prompts):
            raise ValueError(
                f"`reference_images` has {len(reference_images)} entries but `prompts` has {len(prompts)}; give one reference per prompt."
            )
        if len(seeds) != len(prompts):
            raise ValueError(f"`seeds` has {len(seeds)} entries but `prompts` has {len(prompts)}; give one seed per prompt.")
        if not isinstance(negative_prompt, str):
            raise ValueError(f"`negative_prompt` must be a string, got {type(negative_prompt).__name__}.")
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}.")
        if guidance_scale < 1:
            raise ValueError(f"`guidance_scale` must be >= 1 (1 disables guidance), got {guidance_scale}.")
        factor = 2 ** (len(self.components.vae.config.block_out_channels) - 1)
        for name, value in (("height", height), ("width", width)):
            if value <= 0 or value % factor:
                raise ValueError(f"`{name}` must be a positive multiple of {factor} (the VAE's downsampling), got {value}.")

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
        progress: bool = True,
    ) -> VideoMakerOutput:
        """Generate one video per (reference image, prompt, seed), all in one batch.

        Args:
            reference_images: PIL images or uint8 `(H, W, 3)` arrays, one per prompt; stretched to the
                output size as the released code does (`resize((W, H))`, no crop). Use
                subject-highlighted references (subject on white) as in training.
            prompts: Text prompts.
            seeds: One seed per video; each video's noise comes from its own generator, so a video
                does not depend on what else is in the batch. Defaults to 0, 1, 2, ...
            negative_prompt: Text of the unconditional branch (the human default of the paper).
            num_inference_steps: DDIM steps (eta 0).
            guidance_scale: Classifier-free guidance scale.
            height, width: Output size in pixels; default the preset's resolution.
            progress: Show a progress bar over the denoising steps.
        """
        c = self.components
        height = height or c.preset.resolution
        width = width or c.preset.resolution
        seeds = list(range(len(prompts))) if seeds is None else list(seeds)

        # 1. Check inputs
        self.check_inputs(reference_images, prompts, seeds, negative_prompt, num_inference_steps, guidance_scale, height, width)
        num_videos = len(prompts)

        # 2. Encode prompts: uncond (negative prompt) first, then cond, each repeated per frame (ref included)
        text = encode_prompts(c.tokenizer, c.text_encoder, [negative_prompt] * num_videos + prompts)
        text = text.to(c.dtype).repeat_interleave(self.num_frames + 1, dim=0)  # (2N (F+1)), 77, D

        # 3. Encode references without noise; the uncond branch gets a zero reference latent
        pixels = self.prepare_reference_pixels(reference_images, height, width).unsqueeze(1)  # N, 1, 3, H, W
        reference = encode_frames(c.vae, pixels)  # N, C, 1, h, w
        reference = torch.cat([torch.zeros_like(reference), reference])  # 2N, C, 1, h, w

        # 4. Prepare initial noise, one generator per video
        factor = 2 ** (len(c.vae.config.block_out_channels) - 1)
        shape = (c.unet.config.in_channels, self.num_frames, height // factor, width // factor)
        latents = torch.cat(
            [
                randn_tensor((1, *shape), generator=torch.Generator("cpu").manual_seed(seed), device=c.device, dtype=c.dtype)
                for seed in seeds
            ]
        )
        c.scheduler.set_timesteps(num_inference_steps, device=c.device)
        latents = latents * c.scheduler.init_noise_sigma

        # 5. Denoise: the clean reference rides along as the last frame at every step
        for t in tqdm(c.scheduler.timesteps, desc="denoising", disable=not progress):
            sample = torch.cat([latents.repeat(2, 1, 1, 1, 1), reference], dim=2)  # 2N, C, F+1, h, w
            sample = c.scheduler.scale_model_input(sample, t)
            noise_pred = c.unet(sample, t, encoder_hidden_states=text).sample[:, :, : self.num_frames]
            uncond, cond = noise_pred.chunk(2)
            noise_pred = uncond + guidance_scale * (cond - uncond)
            latents = c.scheduler.step(noise_pred, t, latents, eta=0.0).prev_sample

        # 6. Decode the generated frames (the reference frame was discarded above)
        frames = decode_latents(c.vae, latents)
        return VideoMakerOutput(
            frames=frames,
            prompts=list(prompts),
            seeds=seeds,
            provenance={
                "preset": c.preset.name,
                "switches": asdict(self.switches),
                "trained_switches": asdict(self.trained_switches),
                "checkpoint": self.checkpoint,
                "checkpoint_report": self.checkpoint_report,
                "negative_prompt": negative_prompt,
                "num_inference_steps": num_inference_steps,
                "guidance_scale": guidance_scale,
                "height": height,
                "width": width,
                "scheduler": "DDIM",
                "scheduler_origin": c.scheduler_origin.as_record(),
                "dtype": str(c.dtype).removeprefix("torch."),
                "reference_preprocessing": "exif-transpose, alpha on white, stretch to height x width (PIL default filter)",
            },
        )
