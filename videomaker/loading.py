"""Build the model components of a preset: from pretrained sources, or random-init from configs.

Pretrained and saved presets go through one loader (`from_pretrained` on hub ids or directories),
so a tiny preset saved to disk exercises exactly the path the paper preset takes.
"""

from __future__ import annotations

import gzip
import json
import logging
import tempfile
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDIMScheduler, MotionAdapter, UNet2DConditionModel, UNetMotionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from videomaker.presets import PRESET_FILE, Preset, load_preset
from videomaker.scheduling import SchedulerOrigin, load_scheduler, save_scheduler_config

logger = logging.getLogger(__name__)


@dataclass
class VideoMakerComponents:
    """Everything inference and training need, on one device and dtype.

    `scheduler` serves both sampling and training's `add_noise`; `scheduler_origin` says where its
    config came from (the backbone's stored config, or a recorded fallback).
    """

    preset: Preset
    unet: UNetMotionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    scheduler: DDIMScheduler
    scheduler_origin: SchedulerOrigin = field(default_factory=lambda: SchedulerOrigin("unknown"))

    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype


@lru_cache(maxsize=1)
def _open_clip_bpe() -> tuple[dict[str, int], list[str]]:
    """CLIP's vocabulary and merges, rebuilt from the BPE file open_clip ships (no download)."""
    from open_clip.tokenizer import bytes_to_unicode, default_bpe

    with gzip.open(default_bpe(), "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    # Same slice OpenAI's tokenizer takes: 49152 - 256 - 2 merges after the header line.
    merges = lines[1 : 49152 - 256 - 2 + 1]
    byte_chars = list(bytes_to_unicode().values())
    tokens = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}, merges


def build_clip_tokenizer() -> CLIPTokenizer:
    """The real CLIP BPE tokenizer (49408 tokens, 77 positions), built offline."""
    vocab, merges = _open_clip_bpe()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "vocab.json").write_text(json.dumps(vocab))
        (Path(tmp) / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
        tokenizer = CLIPTokenizer(vocab=str(Path(tmp) / "vocab.json"), merges=str(Path(tmp) / "merges.txt"), model_max_length=77)
        tokenizer.save_pretrained(tmp)  # round-trip so the object is identical to a loaded one
        return CLIPTokenizer.from_pretrained(tmp)


def _random_parts(preset: Preset):
    arch = preset.architecture
    torch.manual_seed(preset.init_seed)
    unet2d = UNet2DConditionModel(**arch["unet"])
    adapter = MotionAdapter(**arch["motion_adapter"])
    vae = AutoencoderKL(**arch["vae"])
    text_encoder = CLIPTextModel(CLIPTextConfig(**arch["text_encoder"]))
    return unet2d, adapter, vae, text_encoder, build_clip_tokenizer()


def _pretrained_parts(preset: Preset):
    base = preset.base_model
    try:
        unet2d = UNet2DConditionModel.from_pretrained(base, subfolder="unet")
        adapter = MotionAdapter.from_pretrained(preset.motion_adapter)
        vae = AutoencoderKL.from_pretrained(base, subfolder="vae")
        text_encoder = CLIPTextModel.from_pretrained(base, subfolder="text_encoder")
        tokenizer = CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")
    except OSError as err:
        raise OSError(
            f"Could not load the weights of preset {preset.name!r} (base_model={base!r}, "
            f"motion_adapter={preset.motion_adapter!r}): {err}\nOn a machine without hub access, stage the "
            "weights into a directory and pass it as `base_model`/`motion_adapter`."
        ) from err
    return unet2d, adapter, vae, text_encoder, tokenizer


def load_components(
    preset: Preset | str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> VideoMakerComponents:
    """Build a preset's components in eval mode, with the VideoMaker DDIM schedule.

    The scheduler is the backbone's stored `scheduler/` config with the release overrides
    (`videomaker.scheduling.load_scheduler`); a random-initialised preset has none and falls back
    to the SD1.5 stored config, recorded in `scheduler_origin`.

    Args:
        preset: A `Preset`, a shipped preset name, or a saved preset directory.
        device: Where the modules live.
        dtype: Their dtype; float32 by default because CPUs gain nothing from half precision.

    Example:
        >>> components = load_components("tiny")
    """
    if not isinstance(preset, Preset):
        preset = load_preset(preset)
    parts = _random_parts(preset) if preset.is_random_init else _pretrained_parts(preset)
    unet2d, adapter, vae, text_encoder, tokenizer = parts
    unet = UNetMotionModel.from_unet2d(unet2d, motion_adapter=adapter)
    for module in (unet, vae, text_encoder):
        current = next(module.parameters())
        if current.device != torch.device(device) or current.dtype != dtype:
            module.to(device=device, dtype=dtype)
        module.eval().requires_grad_(False)
    scheduler, origin = load_scheduler(
        preset.base_model, reason_if_none=f"preset {preset.name!r} is random-initialised: its backbone stores no scheduler config"
    )
    return VideoMakerComponents(preset, unet, vae, text_encoder, tokenizer, scheduler, origin)


def save_preset(preset: Preset | str, directory: str | Path) -> Path:
    """Write a preset's weights as pretrained directories plus a `preset.json` pointing at them.

    The result loads with `load_preset(directory)` through the pretrained loader, which is how
    tests exercise the paper preset's code path offline, and how weights are staged for clusters.
    """
    if not isinstance(preset, Preset):
        preset = load_preset(preset)
    directory = Path(directory)
    parts = _random_parts(preset) if preset.is_random_init else _pretrained_parts(preset)
    unet2d, adapter, vae, text_encoder, tokenizer = parts
    unet2d.save_pretrained(directory / "base" / "unet")
    vae.save_pretrained(directory / "base" / "vae")
    text_encoder.save_pretrained(directory / "base" / "text_encoder")
    tokenizer.save_pretrained(directory / "base" / "tokenizer")
    if not preset.is_random_init:  # the stored scheduler config travels with the backbone, unchanged
        save_scheduler_config(preset.base_model, directory / "base")
    adapter.save_pretrained(directory / "motion_adapter")
    record = asdict(preset) | {"base_model": "base", "motion_adapter": "motion_adapter"}
    (directory / PRESET_FILE).write_text(json.dumps(record, indent=2))
    logger.info("Saved preset %r to %s", preset.name, directory)
    return directory


def build_unet_skeleton(preset: Preset | str, device: str | torch.device = "meta") -> UNetMotionModel:
    """The preset's motion UNet without weights (meta device): structure and parameter counts only."""
    if not isinstance(preset, Preset):
        preset = load_preset(preset)
    arch = preset.architecture
    with torch.device(device):
        unet2d = UNet2DConditionModel(**arch["unet"])
        adapter = MotionAdapter(**arch["motion_adapter"])
        return UNetMotionModel.from_unet2d(unet2d, motion_adapter=adapter, load_weights=False)
