"""One real optimisation step on the tiny preset changes exactly the selected parameters."""

import pytest
import torch

from videomaker.girl import GIRLConfig
from videomaker.pisa import PISASwitches
from videomaker.trainable import is_trainable
from videomaker.training import TrainingBatch, make_optimizer, prepare_for_training, training_step


def pixel_batch(batch=1, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return TrainingBatch(
        frames=torch.rand(batch, 16, 3, size, size, generator=g) * 2 - 1,
        reference=torch.rand(batch, 1, 3, size, size, generator=g) * 2 - 1,
        captions=["A person wearing a blue hoodie."] * batch,
    )


@pytest.mark.parametrize("update_motion", [True, False])
def test_one_step_changes_only_selected_parameters(tiny, update_motion):
    parameters = prepare_for_training(tiny, PISASwitches(update_motion=update_motion))
    before = {n: p.detach().clone() for n, p in tiny.unet.named_parameters()}
    frozen_modules = {n: p.detach().clone() for m in (tiny.vae, tiny.text_encoder) for n, p in m.named_parameters()}
    optimizer = make_optimizer(parameters, lr=1e-3)
    # No CFG dropout so every parameter, including the text path, receives a gradient.
    config = GIRLConfig(drop_text=0, drop_reference=0, drop_both=0)
    out = training_step(tiny, pixel_batch(), optimizer, generator=torch.Generator().manual_seed(0), config=config)
    assert out.loss == pytest.approx(out.loss_video + 0.1 * out.loss_reg, rel=1e-6)
    assert out.grad_norm > 0

    for name, parameter in tiny.unet.named_parameters():
        selected = is_trainable(name, update_motion=update_motion)
        changed = not torch.equal(parameter, before[name])
        if selected:
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
            assert changed, name
        else:
            assert parameter.grad is None, name
            assert not changed, name
    assert any(".motion_modules." in n for n, p in tiny.unet.named_parameters() if p.requires_grad) == update_motion
    for module in (tiny.vae, tiny.text_encoder):
        for name, parameter in module.named_parameters():
            assert torch.equal(parameter, frozen_modules[name])


def test_pre_encoded_batch_gives_the_same_loss_as_pixels(tiny):
    from videomaker.training import encode_batch

    prepare_for_training(tiny)
    pixels = pixel_batch()
    video, reference, text = encode_batch(tiny, pixels)
    encoded = TrainingBatch(video_latents=video, reference_latents=reference, text_embeddings=text)
    assert video.shape == (1, 4, 16, 8, 8) and reference.shape == (1, 4, 1, 8, 8)
    losses = []
    for batch in (pixels, encoded):
        optimizer = make_optimizer([p for p in tiny.unet.parameters() if p.requires_grad], lr=0.0)
        losses.append(training_step(tiny, batch, optimizer, generator=torch.Generator().manual_seed(7)).loss)
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_batch_needs_exactly_one_form_of_each_input():
    with pytest.raises(ValueError, match="`frames` and `video_latents`"):
        TrainingBatch(reference=torch.zeros(1), captions=["x"])
