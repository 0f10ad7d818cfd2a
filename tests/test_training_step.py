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


def test_micro_batches_accumulate_to_the_mean_gradient_of_their_losses(tiny):
    from videomaker.girl import girl_loss
    from videomaker.training import encode_batch

    parameters = prepare_for_training(tiny)
    config = GIRLConfig(drop_text=0, drop_reference=0, drop_both=0)
    batches = [pixel_batch(seed=1), pixel_batch(seed=2)]
    # Reference, written out: the two losses with the same generator, drawn in order, averaged, one backward.
    generator = torch.Generator().manual_seed(3)
    losses = [girl_loss(tiny.unet, tiny.scheduler, *encode_batch(tiny, b), generator=generator, config=config).loss for b in batches]
    ((losses[0] + losses[1]) / 2).backward()
    expected = [p.grad.clone() for p in parameters]
    for p in parameters:
        p.grad = None

    optimizer = make_optimizer(parameters, lr=0.0)  # lr 0: the weights stay as the reference saw them
    out = training_step(tiny, batches, optimizer, generator=torch.Generator().manual_seed(3), config=config, max_grad_norm=1e9)
    assert out.loss == pytest.approx(losses[1].item(), rel=1e-6)  # the last micro-batch's loss
    for parameter, grad in zip(parameters, expected):
        torch.testing.assert_close(parameter.grad, grad, rtol=1e-5, atol=1e-8)
    assert out.grad_norm == pytest.approx(torch.linalg.vector_norm(torch.stack([g.norm() for g in expected])).item(), rel=1e-5)


def test_a_skipped_micro_batch_runs_no_backward_and_drops_the_step_so_far(tiny):
    from videomaker.training import micro_step

    parameters = prepare_for_training(tiny)
    micro_step(tiny, pixel_batch(seed=1), generator=torch.Generator().manual_seed(0), grad_accumulation=2)
    assert all(p.grad is not None for p in parameters)
    seen = []
    out = micro_step(
        tiny,
        pixel_batch(seed=2),
        generator=torch.Generator().manual_seed(0),
        grad_accumulation=2,
        skip_batch=lambda loss: seen.append(loss.item()) or True,
    )
    assert out.skipped and seen == [out.girl.loss.item()]
    assert all(p.grad is None for p in tiny.unet.parameters())


def test_optimizer_step_sets_the_learning_rate_it_is_given_and_updates_the_ema():
    from videomaker.training import EMA, optimizer_step

    weight = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    optimizer = torch.optim.SGD([weight], lr=123.0)
    ema = EMA({"w": weight}, decay=0.5)
    weight.grad = torch.tensor([3.0, 4.0])  # norm 5, clipped to 1
    grad_norm = optimizer_step(optimizer, max_grad_norm=1.0, lr=0.1, ema=ema, named_parameters={"w": weight})
    assert grad_norm == pytest.approx(5.0)
    torch.testing.assert_close(weight.detach(), torch.tensor([1.0 - 0.1 * 0.6, -2.0 - 0.1 * 0.8]))
    assert optimizer.param_groups[0]["lr"] == 0.1 and weight.grad is None
    torch.testing.assert_close(ema.shadow["w"], (torch.tensor([1.0, -2.0]) + weight.detach()) / 2)
    with pytest.raises(ValueError, match="named_parameters"):
        optimizer_step(optimizer, ema=ema)


def test_bf16_autocast_step_trains_and_an_unknown_precision_is_refused(tiny):
    from videomaker.training import make_grad_scaler

    parameters = prepare_for_training(tiny)
    out = training_step(
        tiny, pixel_batch(), make_optimizer(parameters, lr=1e-3), generator=torch.Generator().manual_seed(0), mixed_precision="bf16"
    )
    assert torch.isfinite(torch.tensor(out.loss)) and out.grad_norm > 0
    assert out.girl.loss.dtype == torch.float32  # the loss is reduced in float32 even under autocast
    assert not make_grad_scaler("cpu", "bf16").is_enabled() and make_grad_scaler("cpu", "fp16").is_enabled()
    with pytest.raises(ValueError, match="mixed_precision"):
        make_grad_scaler("cpu", "fp8")
