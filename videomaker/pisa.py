"""Personalized Injection Self-Attention (PISA) and the ablation switches (docs/method.md, section 3).

The reference image rides along as the last latent frame. In every spatial self-attention layer
each generated frame attends over its own tokens concatenated with the reference's tokens; the
reference's output is the mean of what it gets in those 16 pairings. No new parameters.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

# Processor keys and parameter names of the spatial transformer blocks; motion modules live under
# `.motion_modules.` and never match.
_SPATIAL_ATTENTION = re.compile(r"(^|\.)attentions\.\d+\.transformer_blocks\.\d+\.(attn1|attn2)\.")
_MOTION_HOOK = "videomaker_video_frames_only"


@dataclass(frozen=True)
class PISASwitches:
    """The ablation switches of the paper's Table 3; defaults are the final model.

    Args:
        ref_in_cross_attn: The reference frame attends to the text in `attn2`. When False, only the
            video frames go through cross-attention and the reference's `attn2` output is zero, so
            the block's residual passes it through unchanged.
        ref_in_motion: The reference takes part in temporal attention as the last frame. When
            False, motion modules run on the video frames only and return the reference unchanged.
        update_motion: Motion-module parameters are trained (see `select_trainable`).
    """

    ref_in_cross_attn: bool = True
    ref_in_motion: bool = True
    update_motion: bool = True


def _frames_view(tensor: torch.Tensor, num_frames: int, argument: str) -> torch.Tensor:
    """`(b f) ...` -> `b f ...`, refusing a batch that is not a whole number of videos."""
    if tensor.shape[0] % num_frames:
        raise ValueError(
            f"`{argument}` has {tensor.shape[0]} rows, not a multiple of num_frames={num_frames} "
            "(16 generated frames + 1 reference). Install the processors with the frame count the UNet gets."
        )
    return tensor.unflatten(0, (tensor.shape[0] // num_frames, num_frames))


class PISAAttnProcessor:
    """PISA for one spatial `attn1` layer; input `(batch * num_frames, tokens, channels)`, reference last.

    Projections run once on all frames (the naive form projects the reference once per generated
    frame), then one batched attention covers all 16 (frame, reference) pairings, and the output
    projection runs on the reference after averaging, which is exact because it is affine.

    Args:
        num_frames: Frames per video including the reference (17 in the paper).
    """

    def __init__(self, num_frames: int = 17):
        if num_frames < 2:
            raise ValueError(f"`num_frames` must count the generated frames plus the reference (>= 2), got {num_frames}.")
        self.num_frames = num_frames

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise ValueError(
                "PISAAttnProcessor is for self-attention only; got "
                f"`encoder_hidden_states`={None if encoder_hidden_states is None else tuple(encoder_hidden_states.shape)}, "
                f"`attention_mask`={None if attention_mask is None else tuple(attention_mask.shape)}."
            )
        if hidden_states.ndim != 3:
            raise ValueError(f"`hidden_states` must be (batch*frames, tokens, channels), got {tuple(hidden_states.shape)}.")
        residual = hidden_states
        x = _frames_view(hidden_states, self.num_frames, "hidden_states")  # b, f, T, C
        batch, frames, tokens, _ = x.shape
        generated = frames - 1

        q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)  # b, f, T, inner
        head_dim = q.shape[-1] // attn.heads

        def pair_with_reference(t: torch.Tensor) -> torch.Tensor:
            # b, f, T, inner -> (b g), heads, 2T, head_dim: frame i's tokens, then the reference's
            paired = torch.cat([t[:, :generated], t[:, generated:].expand(-1, generated, -1, -1)], dim=2)
            return paired.reshape(batch * generated, 2 * tokens, attn.heads, head_dim).transpose(1, 2)

        q, k, v = pair_with_reference(q), pair_with_reference(k), pair_with_reference(v)
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        y = F.scaled_dot_product_attention(q, k, v)  # (b g), heads, 2T, head_dim
        y = y.transpose(1, 2).reshape(batch, generated, 2 * tokens, attn.heads * head_dim)

        video_out = y[:, :, :tokens]  # b, g, T, inner
        reference_out = y[:, :, tokens:].mean(dim=1, keepdim=True)  # b, 1, T, inner
        out = torch.cat([video_out, reference_out], dim=1).flatten(0, 1)  # (b f), T, inner
        out = attn.to_out[1](attn.to_out[0](out))

        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


class VideoFramesCrossAttnProcessor:
    """Text cross-attention for the video frames only; the reference gets a zero update.

    Used when `ref_in_cross_attn` is False. A zero `attn2` output makes the transformer block's
    residual an identity for the reference, which is what "passes through unchanged" means here.
    """

    def __init__(self, num_frames: int = 17):
        if num_frames < 2:
            raise ValueError(f"`num_frames` must count the generated frames plus the reference (>= 2), got {num_frames}.")
        self.num_frames = num_frames
        self._attention = AttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        if encoder_hidden_states is None or attention_mask is not None:
            raise ValueError("VideoFramesCrossAttnProcessor needs `encoder_hidden_states` and no `attention_mask`.")
        x = _frames_view(hidden_states, self.num_frames, "hidden_states")
        text = _frames_view(encoder_hidden_states, self.num_frames, "encoder_hidden_states")
        video_out = self._attention(attn, x[:, :-1].flatten(0, 1), text[:, :-1].flatten(0, 1))
        video_out = video_out.unflatten(0, (x.shape[0], self.num_frames - 1))
        reference_out = torch.zeros_like(video_out[:, :1])
        return torch.cat([video_out, reference_out], dim=1).flatten(0, 1)


class VideoFramesOnlyMotionHook(ModelHook):
    """Runs a motion module on the video frames alone and returns the reference frame unchanged.

    Used when `ref_in_motion` is False. The module's GroupNorm statistics and temporal attention
    then never see the reference, exactly as if the UNet were given 16 frames.
    """

    def __init__(self, num_frames: int = 17):
        super().__init__()
        self.num_frames = num_frames
        self._signature = inspect.signature(AnimateDiffTransformer3D.forward)

    def new_forward(self, module: torch.nn.Module, *args: object, **kwargs: object) -> torch.Tensor:
        call = self._signature.bind(module, *args, **kwargs)
        call.apply_defaults()
        arguments = dict(call.arguments)
        del arguments["self"]
        if arguments["num_frames"] != self.num_frames:
            raise ValueError(
                f"Motion module got num_frames={arguments['num_frames']}, but PISA was installed for "
                f"{self.num_frames} (generated frames + reference)."
            )
        x = _frames_view(arguments["hidden_states"], self.num_frames, "hidden_states")
        arguments.update(hidden_states=x[:, :-1].flatten(0, 1), num_frames=self.num_frames - 1)
        video_out = self.fn_ref.original_forward(**arguments)
        video_out = video_out.unflatten(0, (x.shape[0], self.num_frames - 1))
        return torch.cat([video_out, x[:, -1:]], dim=1).flatten(0, 1)


def is_pisa_layer(name: str) -> bool:
    """True for processor keys / parameter names of spatial self-attention (`attn1`) layers."""
    match = _SPATIAL_ATTENTION.search(name)
    return bool(match) and match.group(2) == "attn1"


def _is_spatial_cross_attention(name: str) -> bool:
    match = _SPATIAL_ATTENTION.search(name)
    return bool(match) and match.group(2) == "attn2"


def install_pisa(unet: torch.nn.Module, switches: PISASwitches = PISASwitches(), num_frames: int = 17) -> list[str]:
    """Put PISA on every spatial self-attention layer of a `UNetMotionModel` and apply the switches.

    Calling it again with other switches replaces the previous installation.

    Args:
        unet: A diffusers `UNetMotionModel`.
        switches: Ablation switches; defaults are the final model.
        num_frames: Frames per video including the reference (17 in the paper).

    Returns:
        The processor keys of the layers that got PISA (16 on the SD1.5 UNet).
    """
    processors = getattr(unet, "attn_processors", {})
    pisa_layers = [name for name in processors if is_pisa_layer(name)]
    if not pisa_layers:
        raise ValueError(
            f"`unet` ({type(unet).__name__}) has no spatial self-attention layers "
            "(`...attentions.N.transformer_blocks.M.attn1`); PISA needs an AnimateDiff `UNetMotionModel`."
        )
    for name, module in unet.named_modules():
        if is_pisa_layer(name + ".") and isinstance(module, Attention):
            if module.group_norm is not None or module.spatial_norm is not None:
                raise ValueError(f"PISA does not support group/spatial norm inside attention layer `{name}`.")

    new_processors = {}
    for name, processor in processors.items():
        if is_pisa_layer(name):
            new_processors[name] = PISAAttnProcessor(num_frames)
        elif _is_spatial_cross_attention(name):
            new_processors[name] = AttnProcessor2_0() if switches.ref_in_cross_attn else VideoFramesCrossAttnProcessor(num_frames)
        else:
            new_processors[name] = processor
    unet.set_attn_processor(new_processors)

    for module in unet.modules():
        if isinstance(module, AnimateDiffTransformer3D):
            registry = HookRegistry.check_if_exists_or_initialize(module)
            if registry.get_hook(_MOTION_HOOK) is not None:
                registry.remove_hook(_MOTION_HOOK, recurse=False)
            if not switches.ref_in_motion:
                registry.register_hook(VideoFramesOnlyMotionHook(num_frames), _MOTION_HOOK)
    return pisa_layers
