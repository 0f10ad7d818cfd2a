"""PISA against an independent naive implementation, and the ablation switches' behaviour."""

import itertools

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

from videomaker.pisa import PISAAttnProcessor, PISASwitches, VideoFramesCrossAttnProcessor, install_pisa

ALL_SWITCHES = [PISASwitches(*combo) for combo in itertools.product([True, False], repeat=3)]


def plain_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Softmax self-attention over the tokens of `x` (T, C) with the layer's own weights."""
    heads = attn.heads
    q, k, v = attn.to_q(x), attn.to_k(x), attn.to_v(x)
    d = q.shape[-1] // heads
    q, k, v = (t.view(-1, heads, d).transpose(0, 1) for t in (q, k, v))  # heads, T, d
    weights = torch.softmax(q @ k.transpose(1, 2) / d**0.5, dim=-1)
    out = (weights @ v).transpose(0, 1).reshape(-1, heads * d)
    return attn.to_out[0](out)


def naive_pisa(attn: Attention, hidden_states: torch.Tensor, num_frames: int) -> torch.Tensor:
    """docs/method.md, section 3 literally: reference repeated per frame, one attention per frame, mean for the reference."""
    outputs = []
    for video in hidden_states.view(-1, num_frames, *hidden_states.shape[1:]):
        tokens = video.shape[1]
        reference = video[-1]
        frame_outputs, reference_outputs = [], []
        for frame in video[:-1]:
            y = plain_attention(attn, torch.cat([frame, reference]))
            frame_outputs.append(y[:tokens])
            reference_outputs.append(y[tokens:])
        outputs.append(torch.stack(frame_outputs + [torch.stack(reference_outputs).mean(0)]))
    return torch.cat(outputs)


class NaivePISAProcessor:
    def __init__(self, num_frames):
        self.num_frames = num_frames

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        return naive_pisa(attn, hidden_states, self.num_frames)


def make_layer(channels: int, heads: int, seed: int = 0) -> Attention:
    torch.manual_seed(seed)
    return Attention(query_dim=channels, heads=heads, dim_head=channels // heads, bias=False).eval()


@pytest.mark.parametrize("batch", [1, 2, 4], ids=["batch1", "batch2", "cfg-doubled-batch2"])
@pytest.mark.parametrize("tokens", [1, 16, 64])
@pytest.mark.parametrize("heads", [1, 2, 8])
def test_pisa_matches_naive_definition(batch, tokens, heads):
    frames = 17
    layer = make_layer(channels=64, heads=heads)
    hidden = torch.randn(batch * frames, tokens, 64)
    with torch.no_grad():
        expected = naive_pisa(layer, hidden, frames)
        actual = PISAAttnProcessor(frames)(layer, hidden)
    assert actual.shape == hidden.shape
    assert (actual - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize("switches", ALL_SWITCHES, ids=str)
def test_installed_layers_match_naive_for_every_switch_combination(tiny, switches):
    unet = tiny.unet
    layers = install_pisa(unet, switches, num_frames=17)
    modules = dict(unet.named_modules())
    torch.manual_seed(1)
    for name in layers:
        attn = modules[name.removesuffix(".processor")]
        assert isinstance(attn.processor, PISAAttnProcessor)
        hidden = torch.randn(2 * 17, 16, attn.to_q.in_features)
        with torch.no_grad():
            assert (attn(hidden) - naive_pisa(attn, hidden, 17)).abs().max().item() < 1e-5

    # The whole UNet with PISA equals the same UNet with the naive processor on those layers.
    sample = torch.randn(2, 4, 17, 8, 8)
    timesteps = torch.tensor([10, 900])
    text = torch.randn(2 * 17, 77, unet.config.cross_attention_dim)
    with torch.no_grad():
        fast = unet(sample, timesteps, encoder_hidden_states=text).sample
        for name in layers:
            modules[name.removesuffix(".processor")].set_processor(NaivePISAProcessor(17))
        naive = unet(sample, timesteps, encoder_hidden_states=text).sample
    assert (fast - naive).abs().max().item() < 1e-5


def test_reference_equal_to_a_frame_gives_stock_self_attention_for_that_frame():
    layer = make_layer(channels=32, heads=4)
    video = torch.randn(17, 16, 32)
    video[-1] = video[5]  # the reference duplicates frame 5: attention over duplicated keys
    with torch.no_grad():
        pisa = PISAAttnProcessor(17)(layer, video)
        stock = AttnProcessor2_0()(layer, video[5:6])
    assert (pisa[5] - stock[0]).abs().max().item() < 1e-5
    assert (pisa[4] - AttnProcessor2_0()(layer, video[4:5])[0]).abs().max().item() > 1e-3


def test_pisa_refuses_bad_inputs():
    layer = make_layer(channels=32, heads=4)
    with pytest.raises(ValueError, match="multiple of num_frames=17"):
        PISAAttnProcessor(17)(layer, torch.randn(16, 4, 32))
    with pytest.raises(ValueError, match="self-attention only"):
        PISAAttnProcessor(17)(layer, torch.randn(17, 4, 32), encoder_hidden_states=torch.randn(17, 7, 32))
    with pytest.raises(ValueError, match="num_frames"):
        PISAAttnProcessor(1)


def test_installer_touches_only_spatial_self_attention(tiny):
    layers = install_pisa(tiny.unet)
    processors = tiny.unet.attn_processors
    assert layers and all(".attentions." in n and n.endswith("attn1.processor") for n in layers)
    for name, processor in processors.items():
        assert isinstance(processor, PISAAttnProcessor) == (name in layers)
        if "motion_modules" in name:
            assert isinstance(processor, AttnProcessor2_0)


def test_installer_refuses_a_model_without_spatial_attention():
    with pytest.raises(ValueError, match="no spatial self-attention"):
        install_pisa(torch.nn.Linear(2, 2))


def _motion_modules(unet):
    return [m for m in unet.modules() if isinstance(m, AnimateDiffTransformer3D)]


def test_ref_in_motion_false_runs_motion_on_video_frames_only(tiny):
    module = _motion_modules(tiny.unet)[0]
    hidden = torch.randn(2 * 17, module.in_channels, 4, 4)
    with torch.no_grad():
        install_pisa(tiny.unet, PISASwitches(ref_in_motion=True))
        with_reference = module(hidden, num_frames=17)
        video_only = module(hidden.view(2, 17, *hidden.shape[1:])[:, :16].flatten(0, 1), num_frames=16)
        install_pisa(tiny.unet, PISASwitches(ref_in_motion=False))
        ablated = module(hidden, num_frames=17).view(2, 17, *hidden.shape[1:])
        ablated_positional = module(hidden, None, None, None, 17, None).view(2, 17, *hidden.shape[1:])
    # The reference passes through unchanged and the video frames are exactly a 16-frame run.
    assert torch.equal(ablated[:, 16], hidden.view(2, 17, *hidden.shape[1:])[:, 16])
    assert torch.allclose(ablated[:, :16].flatten(0, 1), video_only, atol=1e-6)
    assert torch.equal(ablated, ablated_positional)
    # With the reference in temporal attention it changes, and it influences the video frames.
    with_reference = with_reference.view(2, 17, *hidden.shape[1:])
    assert not torch.allclose(with_reference[:, 16], hidden.view(2, 17, *hidden.shape[1:])[:, 16])
    assert not torch.allclose(with_reference[:, :16].flatten(0, 1), video_only, atol=1e-4)
    # Re-installing the default removes the ablation.
    install_pisa(tiny.unet, PISASwitches())
    with torch.no_grad():
        assert torch.equal(module(hidden, num_frames=17).view_as(with_reference), with_reference)


def test_ref_in_cross_attn_false_leaves_reference_out_of_text_attention(tiny):
    install_pisa(tiny.unet, PISASwitches(ref_in_cross_attn=False))
    modules = dict(tiny.unet.named_modules())
    cross = [n.removesuffix(".processor") for n, p in tiny.unet.attn_processors.items() if isinstance(p, VideoFramesCrossAttnProcessor)]
    assert cross and all(n.endswith("attn2") and ".attentions." in n for n in cross)
    attn = modules[cross[0]]
    hidden = torch.randn(2 * 17, 16, attn.to_q.in_features)
    text = torch.randn(2 * 17, 77, tiny.unet.config.cross_attention_dim)
    with torch.no_grad():
        out = attn(hidden, encoder_hidden_states=text).view(2, 17, 16, -1)
        stock = AttnProcessor2_0()(attn, hidden, text).view(2, 17, 16, -1)
    assert torch.equal(out[:, 16], torch.zeros_like(out[:, 16]))  # zero update: identity residual
    assert torch.allclose(out[:, :16], stock[:, :16], atol=1e-6)
    assert stock[:, 16].abs().max() > 1e-3
