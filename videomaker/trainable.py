"""Which parameters VideoMaker fine-tunes (docs/method.md, section 3); everything else stays frozen."""

from __future__ import annotations

import re

import torch

from videomaker.pisa import is_pisa_layer

# Inside PISA layers only the projections train; e.g. `norm1` sits outside `attn1` and stays frozen.
_PROJECTION = re.compile(r"\.attn1\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$")
_MOTION = ".motion_modules."


def is_trainable(name: str, *, update_motion: bool) -> bool:
    """Whether the UNet parameter called `name` is trained under the given `update_motion` switch."""
    if is_pisa_layer(name) and _PROJECTION.search(name):
        return True
    return update_motion and (_MOTION in name or name.startswith("motion_modules."))


def select_trainable(unet: torch.nn.Module, *, update_motion: bool) -> list[str]:
    """Freeze `unet` except the PISA projections (plus motion modules when `update_motion`).

    Returns:
        Names of the parameters left trainable, in `named_parameters` order.
    """
    names = []
    for name, parameter in unet.named_parameters():
        train = is_trainable(name, update_motion=update_motion)
        parameter.requires_grad_(train)
        if train:
            names.append(name)
    if not names:
        raise ValueError(f"No trainable parameters found in `unet` ({type(unet).__name__}); is it a UNetMotionModel?")
    return names
