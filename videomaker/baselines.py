"""IP-Adapter baselines on AnimateDiff, loaded by diffusers, with every setting the author's scripts chose.

The adapters load through diffusers' own `load_ip_adapter` (hub id or staged directory) onto a
stock motion UNet (no PISA). What the comparison depends on is explicit and recorded per video:
the motion adapter (the author's baseline scripts used `AUTHOR_MOTION_ADAPTER`, v1-5-2, which has a
mid-block motion module, where the paper preset uses v1-5-3), the dtype, the size the reference is
stretched to before the image encoder's own preprocessing (`AUTHOR_REFERENCE_SIZE`), the negative
prompt, the adapter scale and, for IP-Adapter-FaceID, its LoRA.

IP-Adapter-FaceID's LoRA: `ip-adapter-faceid_sd15.bin` stores it under `ip_adapter` as
`N.to_{q,k,v,out}_lora.{down,up}.weight`, where N numbers the attention processors of the SD1.5
UNet (attn1 and attn2 of each transformer block). diffusers' `load_ip_adapter` numbers them over
*all* `attn_processors` of the UNet it is given, and on AnimateDiff's `UNetMotionModel` that list
interleaves the motion modules' processors, so the LoRA of layer N would land on the wrong layer (a
motion module from the first motion processor's position on: N = 4 on the paper UNet). This module
strips the LoRA from the file, numbers the spatial processors only (their order equals the SD1.5 UNet's), and applies it with diffusers'
`load_lora_weights` (peft). A separate LoRA file in kohya format (the released
`ip-adapter-faceid_sd15_lora.safetensors`) can be used instead. `ip-adapter-faceid-portrait_sd15.bin`
(the one the author's FaceID baseline ran) has no LoRA and 16 tokens per face embedding.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from diffusers import AnimateDiffPipeline

from videomaker.loading import load_components
from videomaker.pipeline import NEGATIVE_PROMPT_HUMAN, VideoMakerOutput
from videomaker.presets import Preset, load_preset
from videomaker.references import prepare_reference
from videomaker.variants import IP_ADAPTER_VARIANTS

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

FACEID_EMBEDDING_DIM = 512  # insightface ArcFace (buffalo_l) embeddings

# What the author's IP-Adapter baseline scripts ran (jobs/configs/baselines/ sets all of them).
AUTHOR_MOTION_ADAPTER = "guoyww/animatediff-motion-adapter-v1-5-2"
AUTHOR_REFERENCE_SIZE = 640  # load_image(path).resize((640, 640)), then the encoder's own preprocessing
AUTHOR_NEGATIVE_PROMPT = (
    "asymmetry, worst quality, low quality, illustration, 3d, 2d, painting, cartoons, sketch, multiple people, "
    "text on the screen, no people, unclear faces, awkward angles"
)
AUTHOR_WEIGHT_NAMES = {
    "ip-adapter": "ip-adapter_sd15.bin",
    "ip-adapter-plus": "ip-adapter-plus_sd15.bin",
    "ip-adapter-faceid": "ip-adapter-faceid-portrait_sd15.bin",
}
FACEID_LORA_WEIGHT_NAME = "ip-adapter-faceid_sd15_lora.safetensors"  # the same LoRA, kohya format
LORA_ADAPTER_NAME = "faceid"

_LORA_KEY = re.compile(r"^(\d+)\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$")
_HALF_ON_CPU = "float16 on a CPU runs as float32 (CPU kernels for half precision are slow or missing)"


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
    # FaceID projects a face embedding the caller computes; it needs no CLIP image encoder.
    "ip-adapter-faceid": AdapterSource("h94/IP-Adapter-FaceID", None, "ip-adapter-faceid_sd15.bin", None),
}


def _staging_hint(variant: str, weights: str, subfolder: str | None, files: list[str]) -> str:
    """The command that stages a variant's files for machines without hub access."""
    prefix = f"{subfolder}/" if subfolder else ""
    include = " ".join(f'"{prefix}{name}"' for name in files)
    repo = DEFAULT_SOURCES[variant].weights if Path(weights).expanduser().exists() else weights
    return f"`hf download {repo} --include {include} --local-dir DIR`, then pass `weights=DIR`"


def _resolve_file(weights: str, subfolder: str | None, weight_name: str) -> Path:
    """A weight file in a local directory laid out like the hub repository, or in the hub cache."""
    local = Path(weights).expanduser()
    if local.is_dir():
        path = local / (subfolder or "") / weight_name
        if not path.is_file():
            raise OSError(f"{str(path)!r} does not exist.")
        return path
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=weights, filename=weight_name, subfolder=subfolder or None))
    except (OSError, ValueError) as err:  # offline cache misses, unknown repos and bad ids all land here
        raise OSError(str(err)) from err


def _read_adapter_file(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    """`{"image_proj": ..., "ip_adapter": ...}` from an IP-Adapter .bin (torch, tensors only) or .safetensors."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        state: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in f.keys():
                group, _, name = key.partition(".")
                if group in state:
                    state[group][name] = f.get_tensor(key)
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # truncated files, pickles with code, non-torch files
            raise ValueError(f"IP-Adapter file {str(path)!r} is not a readable torch state dict ({err}).") from err
    if not isinstance(state, dict) or not isinstance(state.get("image_proj"), dict) or not isinstance(state.get("ip_adapter"), dict):
        found = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"IP-Adapter file {str(path)!r} must hold the dicts 'image_proj' and 'ip_adapter', found {found}.")
    return state


def spatial_attention_layers(unet: torch.nn.Module) -> list[str]:
    """Module names of the UNet's spatial attention layers (motion modules left out), in processor order.

    This order equals the SD1.5 `UNet2DConditionModel`'s `attn_processors`, which numbers the
    layers of IP-Adapter checkpoints (attn1 and attn2 of each block in turn).
    """
    return [name.removesuffix(".processor") for name in unet.attn_processors if "motion_modules" not in name]


def split_faceid_lora(ip_adapter: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """`(ip_adapter without LoRA, LoRA)`: the LoRA keys (`N.to_q_lora.down.weight`, ...) of a FaceID file."""
    lora = {key: value for key, value in ip_adapter.items() if _LORA_KEY.match(key)}
    return {key: value for key, value in ip_adapter.items() if key not in lora}, lora


def faceid_lora_to_peft(lora: dict[str, torch.Tensor], unet: torch.nn.Module, *, source: str) -> dict[str, torch.Tensor]:
    """Map a FaceID file's numbered LoRA onto the UNet's spatial attention layers, in peft naming.

    Args:
        lora: `N.to_{q,k,v,out}_lora.{down,up}.weight` tensors (`split_faceid_lora`).
        unet: The motion UNet the LoRA is for.
        source: The file, for error messages.

    Returns:
        `unet.<layer>.<to_q|to_k|to_v|to_out.0>.lora_<A|B>.weight` tensors for `load_lora_weights`.
    """
    layers = spatial_attention_layers(unet)
    mapped = {}
    for key, tensor in lora.items():
        index, projection, side = _LORA_KEY.match(key).groups()
        if int(index) >= len(layers):
            raise ValueError(
                f"FaceID LoRA in {source!r} has key {key!r}, but this UNet has only {len(layers)} spatial attention "
                "layers: the file was made for another base model."
            )
        target = "to_out.0" if projection == "to_out" else projection
        linear = unet.get_submodule(f"{layers[int(index)]}.{target}")
        expected = (tensor.shape[0], linear.in_features) if side == "down" else (linear.out_features, tensor.shape[1])
        if tuple(tensor.shape) != expected:
            raise ValueError(
                f"FaceID LoRA in {source!r}: {key!r} has shape {tuple(tensor.shape)}, but {layers[int(index)]}.{target} "
                f"needs {expected}: the file was made for another base model."
            )
        mapped[f"unet.{layers[int(index)]}.{target}.lora_{'A' if side == 'down' else 'B'}.weight"] = tensor
    return mapped


def lora_layers(unet: torch.nn.Module) -> list[str]:
    """Names of the UNet modules that carry a peft LoRA."""
    from peft.tuners.lora import LoraLayer

    return [name for name, module in unet.named_modules() if isinstance(module, LoraLayer)]


def _image_tokens(projection: torch.nn.Module) -> int | None:
    """Tokens the image projection gives per image (per face for FaceID), whatever the variant."""
    for attribute in ("num_tokens", "num_image_text_embeds"):
        if isinstance(getattr(projection, attribute, None), int):
            return getattr(projection, attribute)
    latents = getattr(projection, "latents", None)  # Plus's Resampler queries
    return int(latents.shape[1]) if latents is not None else None


def _motion_source(preset: Preset, motion_adapter: str | Path | None) -> tuple[Preset, str]:
    if motion_adapter is None:
        return preset, preset.motion_adapter or f"random-init (preset {preset.name!r})"
    if preset.is_random_init:
        raise ValueError(
            f"`motion_adapter`={str(motion_adapter)!r} replaces a pretrained preset's motion adapter, but preset "
            f"{preset.name!r} is random-initialised; stage it first (`videomaker.loading.save_preset`) and pass the "
            "directory as `preset`."
        )
    return preset.with_sources(motion_adapter=str(motion_adapter)), str(motion_adapter)


class IPAdapterBaseline:
    """IP-Adapter, IP-Adapter-Plus or IP-Adapter-FaceID on AnimateDiff, one seeded video per prompt.

    Example:
        >>> baseline = IPAdapterBaseline.from_preset("paper", variant="ip-adapter", weights="h94/IP-Adapter",
        ...     weight_name="ip-adapter_sd15.bin", motion_adapter=AUTHOR_MOTION_ADAPTER, reference_size=640)
        >>> out = baseline([reference], ["A person wearing a blue hoodie."], seeds=[42])
    """

    def __init__(
        self, pipe: AnimateDiffPipeline, *, preset: Preset, variant: str, provenance: dict, reference_size: int | None = None
    ) -> None:
        self.pipe = pipe
        self.preset = preset
        self.variant = variant
        self.provenance = provenance
        self.reference_size = reference_size

    @classmethod
    def from_preset(
        cls,
        preset: str | Path | Preset = "tiny",
        *,
        variant: str,
        weights: str | Path | None = None,
        weight_name: str | None = None,
        subfolder: str | None = None,
        image_encoder_folder: str | None = None,
        scale: float = 1.0,
        motion_adapter: str | Path | None = None,
        reference_size: int | None = None,
        lora_weight_name: str | None = None,
        lora_scale: float = 1.0,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> IPAdapterBaseline:
        """Load a preset's components and one IP-Adapter variant with diffusers' `load_ip_adapter`.

        Args:
            preset: Shipped preset name, saved preset directory or `Preset` (the AnimateDiff base).
            variant: One of `IP_ADAPTER_VARIANTS`.
            weights: Hub id or local directory laid out like it; None: the variant's hub repository
                (`DEFAULT_SOURCES`).
            weight_name, subfolder, image_encoder_folder: As in `load_ip_adapter`; None takes the
                variant's default (pass `subfolder=""` for weights at the directory's root).
                `image_encoder_folder` is relative to `subfolder` unless it contains a "/". For
                FaceID, `ip-adapter-faceid-portrait_sd15.bin` is the portrait variant the author ran.
            scale: IP-Adapter scale; 0 turns the adapter off (the author's scripts left it at 1).
            motion_adapter: Hub id or directory of the `MotionAdapter` to use instead of the
                preset's (the author's baselines: `AUTHOR_MOTION_ADAPTER`); None keeps the preset's.
                Needs a pretrained or staged preset.
            reference_size: Stretch the reference to this square size (PIL's default filter) before
                the image encoder's own preprocessing, and before FaceID's face detection (the
                author: 640); None hands the reference over as it is.
            lora_weight_name: FaceID only. None applies the LoRA stored in the FaceID file, if it has
                one (the portrait file has none); a file name (e.g. `FACEID_LORA_WEIGHT_NAME`, kohya
                format) loads that LoRA from `weights`/`subfolder` instead.
            lora_scale: FaceID only: weight of its LoRA (1 as released); 0 leaves the LoRA out.
            device, dtype: Where and in which precision the models run. float16 on a CPU runs as
                float32 (recorded in the provenance), as CPU half-precision kernels are slow or missing.
        """
        if variant not in DEFAULT_SOURCES:
            raise ValueError(f"`variant` must be one of {list(IP_ADAPTER_VARIANTS)}, got {variant!r}.")
        if variant != "ip-adapter-faceid" and (lora_weight_name is not None or lora_scale != 1.0):
            raise ValueError(f"`lora_weight_name` and `lora_scale` are only used by 'ip-adapter-faceid', not {variant!r}.")
        if lora_scale < 0:
            raise ValueError(f"`lora_scale` must be >= 0, got {lora_scale}.")
        if reference_size is not None and reference_size < 1:
            raise ValueError(f"`reference_size` must be a positive number of pixels or None, got {reference_size}.")
        source = DEFAULT_SOURCES[variant]
        weights = str(weights) if weights is not None else source.weights
        weight_name = weight_name or source.weight_name
        subfolder = source.subfolder if subfolder is None else subfolder
        image_encoder_folder = image_encoder_folder or source.image_encoder_folder

        requested = dtype
        if dtype == torch.float16 and torch.device(device).type == "cpu":
            logger.warning("IP-Adapter baseline: %s.", _HALF_ON_CPU)
            dtype = torch.float32
        if not isinstance(preset, Preset):
            preset = load_preset(preset)
        preset, motion_source = _motion_source(preset, motion_adapter)

        c = load_components(preset, device=device, dtype=dtype)
        pipe = AnimateDiffPipeline(
            vae=c.vae,
            text_encoder=c.text_encoder,
            tokenizer=c.tokenizer,
            unet=c.unet,
            motion_adapter=None,
            scheduler=c.scheduler,
        )
        lora_record = None
        try:
            if variant == "ip-adapter-faceid":
                lora_record = _load_faceid(pipe, weights, subfolder, weight_name, lora_weight_name, lora_scale)
            else:
                pipe.load_ip_adapter(weights, subfolder=subfolder, weight_name=weight_name, image_encoder_folder=image_encoder_folder)
        except OSError as err:
            files = [weight_name] + ([f"{image_encoder_folder}/*"] if image_encoder_folder else [])
            files += [lora_weight_name] if lora_weight_name else []
            raise OSError(
                f"Could not load {variant!r} weights {weight_name!r} from {weights!r} (subfolder={subfolder!r}, "
                f"image_encoder_folder={image_encoder_folder!r}): {err}\nOn a machine without hub access, stage "
                f"them first, e.g. {_staging_hint(variant, weights, subfolder, files)}."
            ) from err
        pipe.set_ip_adapter_scale(scale)

        processor = pipe.feature_extractor
        projection = c.unet.encoder_hid_proj.image_projection_layers[0]
        provenance = {
            "method": cls.__name__,
            "variant": variant,
            "weights": weights,
            "subfolder": subfolder,
            "weight_name": weight_name,
            "image_encoder_folder": image_encoder_folder,
            "scale": scale,
            "preset": c.preset.name,
            "motion_adapter": motion_source,
            "motion_mid_block": hasattr(c.unet.mid_block, "motion_modules"),
            "dtype": str(dtype).removeprefix("torch."),
            "dtype_requested": str(requested).removeprefix("torch."),
            "dtype_note": _HALF_ON_CPU if dtype != requested else None,
            "reference_size": reference_size,
            # What the image encoder's own preprocessing does after the stretch (FaceID has no encoder).
            "image_processor": None
            if pipe.image_encoder is None
            else {
                "size": dict(processor.size),
                "crop_size": dict(processor.crop_size),
                "resample": int(processor.resample),
            },
            "image_tokens": _image_tokens(projection),
            "lora": lora_record,
            "scheduler": "DDIM",
            "scheduler_origin": c.scheduler_origin.as_record(),
        }
        return cls(pipe, preset=c.preset, variant=variant, provenance=provenance, reference_size=reference_size)

    def prepare_reference(self, image: Image.Image | np.ndarray) -> Image.Image:
        """The reference as the adapter sees it: stretched to `reference_size` (if set), as a PIL image.

        Args:
            image: PIL image or uint8 `(H, W, 3)` RGB array.
        """
        from PIL import Image

        if self.reference_size is not None:
            return prepare_reference(image, self.reference_size)
        return image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))

    def check_inputs(self, reference_images: list, prompts: list[str], seeds: list[int], face_embeddings: list[np.ndarray] | None) -> None:
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"`prompts` must be a non-empty list of strings, got {prompts!r}.")
        for name, values in (("reference_images", reference_images), ("seeds", seeds)):
            if len(values) != len(prompts):
                raise ValueError(f"`{name}` has {len(values)} entries but `prompts` has {len(prompts)}; give one per prompt.")
        if self.variant != "ip-adapter-faceid":
            if face_embeddings is not None:
                raise ValueError(f"`face_embeddings` is only used by variant 'ip-adapter-faceid', not {self.variant!r}.")
            return
        if face_embeddings is None or len(face_embeddings) != len(prompts):
            got = None if face_embeddings is None else f"{len(face_embeddings)} entries"
            raise ValueError(
                f"`face_embeddings` must give one {FACEID_EMBEDDING_DIM}-d insightface embedding (or an (N, "
                f"{FACEID_EMBEDDING_DIM}) stack) per prompt for variant 'ip-adapter-faceid', got {got}."
            )
        for index, embedding in enumerate(face_embeddings):
            shape = np.shape(embedding)
            if shape != (FACEID_EMBEDDING_DIM,) and not (len(shape) == 2 and shape[0] >= 1 and shape[1] == FACEID_EMBEDDING_DIM):
                raise ValueError(
                    f"`face_embeddings[{index}]` must have shape ({FACEID_EMBEDDING_DIM},) or (N, {FACEID_EMBEDDING_DIM}), got {shape}."
                )

    def _face_embeds(self, embedding: np.ndarray, guidance_scale: float) -> list[torch.Tensor]:
        """The author's FaceID layout: one `(2, N, D)` tensor, [zeros (uncond), unit embeddings]."""
        unet = self.pipe.unet
        positive = torch.as_tensor(np.asarray(embedding), dtype=torch.float32).reshape(1, -1, FACEID_EMBEDDING_DIM)
        positive = (positive / positive.norm(dim=-1, keepdim=True)).to(unet.device, unet.dtype)
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
        generator_device: str = "cpu",
        progress: bool = True,
    ) -> VideoMakerOutput:
        """Generate one video per (reference, prompt, seed), each in its own diffusers call.

        Args:
            reference_images: PIL images or uint8 `(H, W, 3)` arrays, one per prompt; the image
                variants stretch them to `reference_size` and encode them with CLIP, FaceID ignores
                them (see `face_embeddings`).
            prompts: Text prompts.
            seeds: One per video, each with its own generator, so a video does not depend on the
                rest of the batch. Defaults to 0, 1, 2, ...
            negative_prompt, num_inference_steps, guidance_scale: DDIM (eta 0) settings; the author's
                baselines used `AUTHOR_NEGATIVE_PROMPT`, 30 steps, guidance 8.
            height, width: Output size; default the preset's resolution.
            face_embeddings: FaceID only: per prompt one insightface embedding `(512,)`, or `(N, 512)`
                for N faces (the portrait variant takes several; the author gave one), normalised here.
            generator_device: Device of each seed's `torch.Generator` ("cpu": the same noise on any
                machine; the author's scripts used "cuda", whose noise differs for the same seed).
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
                adapter_input = {"ip_adapter_image": self.prepare_reference(reference_images[index])}
            result = self.pipe(
                prompt=prompt,
                negative_prompt=negative_prompt,
                num_frames=self.preset.num_frames,
                height=height,
                width=width,
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                eta=0.0,
                generator=torch.Generator(generator_device).manual_seed(seed),
                output_type="np",
                **adapter_input,
            )
            videos.append(result.frames[0])  # F, H, W, 3 floats in [0, 1]
        frames = (np.stack(videos) * 255).round().clip(0, 255).astype(np.uint8)
        per_video = {
            "negative_prompt": negative_prompt,
            "num_inference_steps": num_inference_steps,
            "guidance_scale": guidance_scale,
            "height": height,
            "width": width,
            "generator_device": generator_device,
        }
        if face_embeddings is not None:
            per_video["face_embeddings_per_video"] = [int(np.size(e) // FACEID_EMBEDDING_DIM) for e in face_embeddings]
        return VideoMakerOutput(frames=frames, prompts=list(prompts), seeds=seeds, provenance=self.provenance | per_video)


def _load_faceid(
    pipe: AnimateDiffPipeline, weights: str, subfolder: str | None, weight_name: str, lora_weight_name: str | None, lora_scale: float
) -> dict | None:
    """Load a FaceID file without its LoRA through `load_ip_adapter`, then its LoRA on the spatial layers.

    Returns the LoRA's provenance record, or None when no LoRA was applied.
    """
    path = _resolve_file(weights, subfolder, weight_name)
    state = _read_adapter_file(path)
    ip_adapter, embedded = split_faceid_lora(state["ip_adapter"])
    # A dict: diffusers neither reloads the file nor applies the LoRA with its own numbering.
    pipe.load_ip_adapter(
        {"image_proj": state["image_proj"], "ip_adapter": ip_adapter},
        subfolder=subfolder,
        weight_name=weight_name,
        image_encoder_folder=None,
    )
    if lora_scale == 0:
        return {"source": None, "scale": 0.0, "note": "lora_scale 0: LoRA left out"}
    if lora_weight_name is not None:
        lora_path = _resolve_file(weights, subfolder, lora_weight_name)
        pipe.load_lora_weights(str(lora_path.parent), weight_name=lora_path.name, adapter_name=LORA_ADAPTER_NAME)
        source = str(lora_weight_name)
    elif embedded:
        pipe.load_lora_weights(faceid_lora_to_peft(embedded, pipe.unet, source=str(path)), adapter_name=LORA_ADAPTER_NAME)
        source = f"{weight_name} (embedded)"
    else:
        logger.info("FaceID file %s holds no LoRA (the portrait variant has none); none applied.", weight_name)
        return None
    pipe.set_adapters([LORA_ADAPTER_NAME], adapter_weights=[lora_scale])
    layers = lora_layers(pipe.unet)
    stray = [name for name in layers if "motion_modules" in name]
    if stray or not layers:
        raise ValueError(
            f"FaceID LoRA {source!r} must change spatial attention layers only; it landed on {len(layers)} layers, "
            f"{len(stray)} of them in motion modules (e.g. {stray[:1]})."
        )
    return {"source": source, "scale": lora_scale, "layers": len(layers)}
