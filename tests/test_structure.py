"""The paper-size UNet, built from the paper preset's configs on the meta device (no weights)."""

import pytest

from videomaker.loading import build_unet_skeleton
from videomaker.pisa import install_pisa
from videomaker.presets import load_preset
from videomaker.trainable import select_trainable


@pytest.fixture(scope="module")
def paper_unet():
    unet = build_unet_skeleton("paper")
    assert next(unet.parameters()).is_meta
    return unet


def expected_pisa_parameters(unet_config: dict) -> int:
    """4 d^2 + d per spatial self-attention layer, counted from the block layout alone."""
    channels = unet_config["block_out_channels"]
    layers = unet_config["layers_per_block"]
    total = 0
    for i, block in enumerate(unet_config["down_block_types"]):
        if block.startswith("CrossAttn"):
            total += layers * (4 * channels[i] ** 2 + channels[i])
    total += 4 * channels[-1] ** 2 + channels[-1]  # mid block: one transformer
    for i, block in enumerate(unet_config["up_block_types"]):
        d = list(reversed(channels))[i]
        if block.startswith("CrossAttn"):
            total += (layers + 1) * (4 * d**2 + d)
    return total


def test_installer_touches_16_spatial_layers_none_in_motion_modules(paper_unet):
    layers = install_pisa(paper_unet)
    assert len(layers) == 16
    assert not [name for name in layers if "motion_modules" in name]
    per_block = {}
    for name in layers:
        block = name.split(".attentions.")[0]
        per_block[block] = per_block.get(block, 0) + 1
    assert per_block == {
        "down_blocks.0": 2,
        "down_blocks.1": 2,
        "down_blocks.2": 2,
        "mid_block": 1,
        "up_blocks.1": 3,
        "up_blocks.2": 3,
        "up_blocks.3": 3,
    }


def test_trainable_parameter_counts_match_the_published_ones(paper_unet):  # docs/method.md, section 3
    config = load_preset("paper").architecture["unet"]
    names = select_trainable(paper_unet, update_motion=False)
    pisa = sum(p.numel() for p in paper_unet.parameters() if p.requires_grad)
    assert pisa == expected_pisa_parameters(config)
    assert round(pisa / 1e6, 1) == 49.6
    assert len(names) == 16 * 5  # to_q, to_k, to_v weights + to_out.0 weight and bias

    select_trainable(paper_unet, update_motion=True)
    everything = sum(p.numel() for p in paper_unet.parameters() if p.requires_grad)
    motion = sum(p.numel() for n, p in paper_unet.named_parameters() if ".motion_modules." in n)
    assert everything - pisa == motion
    assert round(motion / 1e6, 1) == 417.1
    trainable = {n for n, p in paper_unet.named_parameters() if p.requires_grad}
    spatial = [n for n, _ in paper_unet.named_parameters() if ".attentions." in n]
    assert [n for n in spatial if ".norm1." in n or ".attn2." in n or ".ff." in n]
    assert not [n for n in spatial if n in trainable and ".attn1." not in n]  # norm1, attn2, ff stay frozen
