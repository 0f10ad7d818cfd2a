"""PISA against an independent naive implementation, and the ablation switches' behaviour.

Both processors are checked against the naive definition written here: the merged one that runs
(`PISAAttnProcessor`, fused kernels or explicit ops) and the previous paired one, a second reference.
"""

import itertools

import pytest
import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from torch.utils.flop_counter import FlopCounterMode

from videomaker.pisa import (
    PairedPISAAttnProcessor,
    PISAAttnProcessor,
    PISASwitches,
    VideoFramesCrossAttnProcessor,
    install_pisa,
)

ALL_SWITCHES = [PISASwitches(*combo) for combo in itertools.product([True, False], repeat=3)]
PROCESSORS = {
    "merged": lambda frames: PISAAttnProcessor(frames),
    "merged-explicit": lambda frames: PISAAttnProcessor(frames, kernel="explicit"),
    "paired": lambda frames: PairedPISAAttnProcessor(frames),
}


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


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.mark.parametrize("processor", PROCESSORS)
@pytest.mark.parametrize("batch", [1, 2, 4], ids=["batch1", "batch2", "cfg-doubled-batch2"])
@pytest.mark.parametrize("tokens", [1, 16, 64, 257])
@pytest.mark.parametrize("heads", [1, 2, 8])
def test_pisa_matches_naive_definition(processor, batch, tokens, heads):
    frames = 17
    layer = make_layer(channels=64, heads=heads)
    hidden = torch.randn(batch * frames, tokens, 64)
    with torch.no_grad():
        expected = naive_pisa(layer, hidden, frames)
        actual = PROCESSORS[processor](frames)(layer, hidden)
    assert actual.shape == hidden.shape
    assert max_diff(actual, expected) < 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("tokens,batch", [(1024, 4), (4096, 1)], ids=["T1024-cfg", "T4096"])
def test_merged_matches_naive_definition_at_large_token_counts(tokens, batch):
    # 4096 tokens per frame is the paper's C=320 level (64x64 latent); few channels keep the naive loop affordable.
    layer = make_layer(channels=16, heads=2)
    hidden = torch.randn(batch * 17, tokens, 16)
    with torch.no_grad():
        expected = naive_pisa(layer, hidden, 17)
        for processor in ("merged", "paired"):
            assert max_diff(PROCESSORS[processor](17)(layer, hidden), expected) < 1e-5, processor


@pytest.mark.parametrize("processor", ["merged", "merged-explicit"])
@pytest.mark.parametrize("batch,tokens,heads", [(1, 1, 1), (1, 16, 8), (2, 64, 2), (4, 33, 8)])
def test_merged_gradients_match_naive_definition(processor, batch, tokens, heads):
    """The fused kernels' backward with merged normalisers gives the definition's gradients (input and weights)."""
    layer = make_layer(channels=64, heads=heads)
    hidden = torch.randn(batch * 17, tokens, 64, requires_grad=True)
    upstream = torch.randn(batch * 17, tokens, 64)
    inputs = [hidden, *layer.parameters()]
    expected = torch.autograd.grad((naive_pisa(layer, hidden, 17) * upstream).sum(), inputs)
    actual = torch.autograd.grad((PROCESSORS[processor](17)(layer, hidden) * upstream).sum(), inputs)
    for name, a, e in zip(["hidden_states", *(n for n, _ in layer.named_parameters())], actual, expected):
        assert max_diff(a, e) < 1e-5 * max(1.0, e.abs().max().item()), name


def test_merged_is_exact_in_float64():
    # In float64 the merge is exact to float64 rounding, forward and backward: no approximation anywhere.
    layer = make_layer(channels=32, heads=4).double()
    hidden = torch.randn(2 * 17, 24, 32, dtype=torch.float64, requires_grad=True)
    expected = naive_pisa(layer, hidden, 17)
    actual = PISAAttnProcessor(17)(layer, hidden)
    assert max_diff(actual, expected) < 1e-12
    upstream = torch.randn_like(expected)
    grads = [torch.autograd.grad((y * upstream).sum(), hidden)[0] for y in (expected, actual)]
    assert max_diff(*grads) < 1e-12


def stock_pisa(attn: Attention, hidden_states: torch.Tensor) -> torch.Tensor:
    """The definition with diffusers' stock SDPA processor for each (frame, reference) pairing."""
    stock = AttnProcessor2_0()
    video = hidden_states.unflatten(0, (-1, 17))
    tokens = video.shape[2]
    pairs = [stock(attn, torch.cat([video[:, i], video[:, -1]], dim=1)) for i in range(16)]
    reference = torch.stack([y[:, tokens:] for y in pairs]).mean(0)
    return torch.stack([*(y[:, :tokens] for y in pairs), reference], dim=1).flatten(0, 1)


@pytest.mark.parametrize("tokens,channels", [(64, 64), (256, 320)])
def test_merged_in_bfloat16_within_the_error_stock_sdpa_shows(tokens, channels):
    """bf16 error against the float64 definition, bounded by stock SDPA's own bf16 error on the same inputs.

    The bound is twice the measured stock error, the convention of FlashAttention's own tests: the merge
    rounds two partial outputs to bf16 where stock rounds one (measured here at about 1.1x).
    """
    layer = make_layer(channels=channels, heads=8).to(torch.bfloat16)
    exact = make_layer(channels=channels, heads=8).double()
    exact.load_state_dict({k: v.double() for k, v in layer.state_dict().items()})  # the same bf16 weights
    hidden = torch.randn(2 * 17, tokens, channels).to(torch.bfloat16)
    upstream = torch.randn(2 * 17, tokens, channels).to(torch.bfloat16)
    hidden64 = hidden.double().requires_grad_()
    truth = naive_pisa(exact, hidden64, 17)
    truth_grad = torch.autograd.grad((truth * upstream.double()).sum(), hidden64)[0]

    def error(fn):
        x = hidden.clone().requires_grad_()
        y = fn(layer, x)
        grad = torch.autograd.grad((y * upstream).sum(), x)[0]
        return max_diff(y.double(), truth), max_diff(grad.double(), truth_grad)

    stock_out, stock_grad = error(stock_pisa)
    merged_out, merged_grad = error(PISAAttnProcessor(17))
    assert 0 < stock_out and 0 < stock_grad  # bf16 really rounds: the bound is not vacuous
    assert merged_out <= 2 * stock_out, (merged_out, stock_out)
    assert merged_grad <= 2 * stock_grad, (merged_grad, stock_grad)


def attention_flops(processor, attn: Attention, hidden: torch.Tensor) -> int:
    """FLOPs FlopCounterMode counts in the fused attention kernels (forward and backward), projections excluded."""
    with FlopCounterMode(display=False) as counter:
        processor(attn, hidden).sum().backward()
    return sum(n for op, n in counter.get_flop_counts()["Global"].items() if "attention" in str(op))


@pytest.mark.parametrize("tokens", [16, 64])
def test_merged_counts_49_of_64_attention_flops_of_the_paired_processor(tokens):
    # Frame rows 16 x (T x 2T) and reference rows T x T + 16 x (T x T), against 16 x (2T x 2T) pairings.
    attn = make_layer(channels=64, heads=8)
    hidden = torch.randn(17, tokens, 64, requires_grad=True)
    merged = attention_flops(PISAAttnProcessor(17), attn, hidden)
    paired = attention_flops(PairedPISAAttnProcessor(17), attn, hidden)
    assert merged > 0 and merged / paired == pytest.approx(49 / 64, abs=1e-9)


@pytest.mark.parametrize("implementation", ["merged", "paired"])
@pytest.mark.parametrize("switches", ALL_SWITCHES, ids=str)
def test_installed_layers_match_naive_for_every_switch_combination(tiny, switches, implementation):
    unet = tiny.unet
    layers = install_pisa(unet, switches, num_frames=17, implementation=implementation)
    modules = dict(unet.named_modules())
    torch.manual_seed(1)
    for name in layers:
        attn = modules[name.removesuffix(".processor")]
        assert type(attn.processor) is {"merged": PISAAttnProcessor, "paired": PairedPISAAttnProcessor}[implementation]
        hidden = torch.randn(2 * 17, 16, attn.to_q.in_features)
        with torch.no_grad():
            assert (attn(hidden) - naive_pisa(attn, hidden, 17)).abs().max().item() < 1e-5

    # The whole UNet with PISA equals the same UNet with the naive processor on those layers.
    sample = torch.randn(2, 4, 17, 8, 8)
    timesteps = torch.tensor([10, 900])
    text = torch.randn(2 * 17, 77, unet.config.cross_attention_dim)
    parameters = [p.requires_grad_() for p in unet.parameters()]  # gradients for every weight, PISA layers' included

    def forward_backward() -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = unet(sample, timesteps, encoder_hidden_states=text).sample
        return out.detach(), torch.autograd.grad(out.square().mean(), parameters)

    fast, fast_grads = forward_backward()
    for name in layers:
        modules[name.removesuffix(".processor")].set_processor(NaivePISAProcessor(17))
    naive, naive_grads = forward_backward()
    assert max_diff(fast, naive) < 1e-5
    assert max(max_diff(a, b) for a, b in zip(fast_grads, naive_grads)) < 1e-5


@pytest.mark.parametrize("processor", PROCESSORS)
def test_reference_equal_to_a_frame_gives_stock_self_attention_for_that_frame(processor):
    layer = make_layer(channels=32, heads=4)
    video = torch.randn(17, 16, 32)
    video[-1] = video[5]  # the reference duplicates frame 5: attention over duplicated keys
    with torch.no_grad():
        pisa = PROCESSORS[processor](17)(layer, video)
        stock = AttnProcessor2_0()(layer, video[5:6])
    assert (pisa[5] - stock[0]).abs().max().item() < 1e-5
    assert (pisa[4] - AttnProcessor2_0()(layer, video[4:5])[0]).abs().max().item() > 1e-3


@pytest.mark.parametrize("processor", PROCESSORS)
def test_pisa_refuses_bad_inputs(processor):
    layer = make_layer(channels=32, heads=4)
    with pytest.raises(ValueError, match="multiple of num_frames=17"):
        PROCESSORS[processor](17)(layer, torch.randn(16, 4, 32))
    with pytest.raises(ValueError, match="self-attention only"):
        PROCESSORS[processor](17)(layer, torch.randn(17, 4, 32), encoder_hidden_states=torch.randn(17, 7, 32))
    with pytest.raises(ValueError, match="num_frames"):
        PROCESSORS[processor](1)


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


def test_installer_and_processor_refuse_unknown_implementations(tiny):
    with pytest.raises(ValueError, match="'merged', 'paired'"):
        install_pisa(tiny.unet, implementation="flash")
    with pytest.raises(ValueError, match="'auto' or 'explicit'"):
        PISAAttnProcessor(17, kernel="triton")


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
