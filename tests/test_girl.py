"""GIRL + min-SNR against a hand computation with a UNet stand-in whose output is known."""

import numpy as np
import pytest
import torch

from videomaker.girl import GIRLConfig, girl_loss, remind_timesteps, sample_condition_dropout
from videomaker.scheduling import make_scheduler


class KnownOutputUNet(torch.nn.Module):
    """Returns a fixed prediction and records what it was called with."""

    def __init__(self, prediction):
        super().__init__()
        self.prediction = prediction
        self.calls = []

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        self.calls.append((sample.clone(), timestep.clone(), encoder_hidden_states.clone()))
        return self.prediction


def hand_alphas_cumprod() -> np.ndarray:
    betas = np.linspace(0.00085, 0.012, 1000, dtype=np.float64)
    return np.cumprod(1.0 - betas)


def test_loss_equals_hand_computation():
    torch.manual_seed(0)
    batch, channels, frames, h, w = 4, 4, 16, 3, 3
    video = torch.randn(batch, channels, frames, h, w)
    reference = torch.randn(batch, channels, 1, h, w)
    text = torch.randn(batch, 77, 8)
    prediction = torch.randn(batch, channels, frames + 1, h, w)
    unet = KnownOutputUNet(prediction)
    config = GIRLConfig(drop_text=0.0, drop_reference=0.0, drop_both=0.0)
    out = girl_loss(unet, make_scheduler(), video, reference, text, generator=torch.Generator().manual_seed(3), config=config)

    ac = hand_alphas_cumprod()
    t = out.timesteps.numpy()
    t_ref = np.floor(0.01 * t).astype(int)
    eps, eps_r = out.noise.double().numpy(), out.reference_noise.double().numpy()
    pred = prediction.double().numpy()
    snr = ac[t] / (1 - ac[t])
    weights = np.minimum(snr, 5.0) / snr
    per_sample = ((pred[:, :, :16] - eps) ** 2).mean(axis=(1, 2, 3, 4))
    loss_video = (weights * per_sample).mean()
    loss_reg = ((pred[:, :, 16:] - eps_r) ** 2).mean()
    assert out.loss_video.item() == pytest.approx(loss_video, rel=1e-5)
    assert out.loss_reg.item() == pytest.approx(loss_reg, rel=1e-5)
    assert out.loss.item() == pytest.approx(loss_video + 0.1 * loss_reg, rel=1e-5)

    # What the UNet received: 17 frames, reference last with remind noise at t', one t for all frames.
    sample, timestep, encoder_hidden_states = unet.calls[0]
    assert sample.shape == (batch, channels, 17, h, w)

    def per_sample(values):  # (batch,) -> broadcastable over (batch, channels, frames, height, width)
        return values.reshape(-1, 1, 1, 1, 1)

    expected_video = np.sqrt(per_sample(ac[t])) * video.double().numpy() + np.sqrt(1 - per_sample(ac[t])) * eps
    expected_ref = np.sqrt(per_sample(ac[t_ref])) * reference.double().numpy() + np.sqrt(1 - per_sample(ac[t_ref])) * eps_r
    np.testing.assert_allclose(sample[:, :, :16].numpy(), expected_video, atol=1e-5)
    np.testing.assert_allclose(sample[:, :, 16:].numpy(), expected_ref, atol=1e-5)
    assert torch.equal(timestep, out.timesteps)
    assert encoder_hidden_states.shape == (batch * 17, 77, 8)
    assert torch.equal(encoder_hidden_states.view(batch, 17, 77, 8), text[:, None].expand(-1, 17, -1, -1))
    # Independent noise for the reference.
    assert not torch.allclose(out.noise[:, :, :1], out.reference_noise)


def test_remind_timestep_is_floor_of_one_percent_per_sample():
    t = torch.arange(1000)
    assert torch.equal(remind_timesteps(t), torch.tensor([int(np.floor(0.01 * v)) for v in range(1000)]))
    unet = KnownOutputUNet(torch.zeros(64, 4, 17, 2, 2))
    out = girl_loss(
        unet,
        make_scheduler(),
        torch.zeros(64, 4, 16, 2, 2),
        torch.zeros(64, 4, 1, 2, 2),
        torch.zeros(64, 77, 4),
        generator=torch.Generator().manual_seed(0),
    )
    assert len(set(out.timesteps.tolist())) > 30  # per sample, not one t for the batch
    assert torch.equal(out.remind_timesteps, out.timesteps // 100)


def test_dropout_shares_over_20000_draws():
    text, reference = sample_condition_dropout(20_000, torch.Generator().manual_seed(1234))
    shares = {
        "text only": (text & ~reference).float().mean().item(),
        "reference only": (~text & reference).float().mean().item(),
        "both": (text & reference).float().mean().item(),
        "keep": (~text & ~reference).float().mean().item(),
    }
    expected = {"text only": 0.05, "reference only": 0.05, "both": 0.05, "keep": 0.85}
    for case, share in shares.items():
        assert abs(share - expected[case]) < 0.005, (case, share)


def test_dropped_conditions_reach_the_unet_as_zeros():
    batch = 400
    unet = KnownOutputUNet(torch.zeros(batch, 4, 17, 2, 2))
    video, reference, text = torch.randn(batch, 4, 16, 2, 2), torch.randn(batch, 4, 1, 2, 2), torch.randn(batch, 77, 4)
    out = girl_loss(unet, make_scheduler(), video, reference, text, generator=torch.Generator().manual_seed(5))
    sample, _, encoder_hidden_states = unet.calls[0]
    embeddings = encoder_hidden_states.view(batch, 17, 77, 4)
    assert out.text_dropped.any() and out.reference_dropped.any()
    assert torch.all(embeddings[out.text_dropped] == 0)
    assert torch.all(embeddings[~out.text_dropped].abs().sum(dim=(1, 2, 3)) > 0)
    # A dropped reference is zero before the remind noise: only scaled noise remains.
    ac = torch.tensor(hand_alphas_cumprod(), dtype=torch.float32)
    sigma = (1 - ac[out.remind_timesteps]).sqrt().view(-1, 1, 1, 1, 1)
    dropped = out.reference_dropped
    assert torch.allclose(sample[dropped, :, 16:], (sigma * out.reference_noise)[dropped], atol=1e-6)
    assert not torch.allclose(sample[~dropped, :, 16:], (sigma * out.reference_noise)[~dropped], atol=1e-3)


def test_bad_shapes_are_refused():
    unet = KnownOutputUNet(None)
    with pytest.raises(ValueError, match="reference_latents"):
        girl_loss(unet, make_scheduler(), torch.zeros(1, 4, 16, 2, 2), torch.zeros(1, 4, 2, 2, 2), torch.zeros(1, 77, 4))
    with pytest.raises(ValueError, match="text_embeddings"):
        girl_loss(unet, make_scheduler(), torch.zeros(2, 4, 16, 2, 2), torch.zeros(2, 4, 1, 2, 2), torch.zeros(1, 77, 4))
    with pytest.raises(ValueError, match="drop_text"):
        GIRLConfig(drop_text=0.9, drop_reference=0.2)


def test_girl_false_is_the_plain_epsilon_loss_on_the_video_frames():
    """The ablation row without GIRL: clean reference in, no remind noise, no L_reg, video loss as before."""
    torch.manual_seed(1)
    batch, channels, frames, h, w = 3, 4, 16, 2, 2
    video = torch.randn(batch, channels, frames, h, w)
    reference = torch.randn(batch, channels, 1, h, w)
    text = torch.randn(batch, 77, 8)
    prediction = torch.randn(batch, channels, frames + 1, h, w)
    unet = KnownOutputUNet(prediction)
    config = GIRLConfig(girl=False, drop_text=0.0, drop_reference=0.0, drop_both=0.0)
    out = girl_loss(unet, make_scheduler(), video, reference, text, generator=torch.Generator().manual_seed(5), config=config)

    ac = hand_alphas_cumprod()
    t = out.timesteps.numpy()
    eps = out.noise.double().numpy()
    snr = ac[t] / (1 - ac[t])
    per_sample = ((prediction.double().numpy()[:, :, :16] - eps) ** 2).mean(axis=(1, 2, 3, 4))
    expected = (np.minimum(snr, 5.0) / snr * per_sample).mean()
    assert out.loss.item() == pytest.approx(expected, rel=1e-5)
    assert out.loss_video.item() == pytest.approx(expected, rel=1e-5) and out.loss_reg.item() == 0.0
    sample, timestep, _ = unet.calls[0]
    np.testing.assert_array_equal(sample[:, :, 16:].numpy(), reference.numpy())  # the reference enters clean
    assert torch.equal(timestep, out.timesteps) and not out.remind_timesteps.any()
    # The loss ignores the reference frame's prediction entirely.
    prediction[:, :, 16:] += 100.0
    again = girl_loss(unet, make_scheduler(), video, reference, text, generator=torch.Generator().manual_seed(5), config=config)
    assert again.loss.item() == pytest.approx(expected, rel=1e-5)


def test_girl_false_still_drops_the_reference_for_classifier_free_guidance():
    batch, channels, h, w = 8, 4, 2, 2
    reference = torch.ones(batch, channels, 1, h, w)
    unet = KnownOutputUNet(torch.zeros(batch, channels, 17, h, w))
    config = GIRLConfig(girl=False, drop_text=0.0, drop_reference=1.0, drop_both=0.0)
    girl_loss(
        unet,
        make_scheduler(),
        torch.zeros(batch, channels, 16, h, w),
        reference,
        torch.ones(batch, 77, 8),
        generator=torch.Generator().manual_seed(0),
        config=config,
    )
    assert not unet.calls[0][0][:, :, 16:].any()
