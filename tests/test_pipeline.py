"""Inference on the tiny preset: shapes, determinism, seeds, the zero reference of the uncond branch."""

import numpy as np
import pytest
import torch

from videomaker.encoding import encode_frames, images_to_tensor
from videomaker.pipeline import VideoMakerPipeline

PROMPTS = ["A person wearing a blue hoodie.", "A person riding a horse."]


@pytest.fixture
def pipe(tiny):
    return VideoMakerPipeline(tiny)


def test_returns_16_frames_of_the_requested_size(pipe, reference_image):
    out = pipe([reference_image], PROMPTS[:1], seeds=[0], num_inference_steps=3, height=48, width=80, progress=False)
    assert out.frames.shape == (1, 16, 48, 80, 3) and out.frames.dtype == np.uint8
    assert out.provenance["preset"] == "tiny" and out.provenance["guidance_scale"] == 8.0


def test_same_seed_same_video_other_seed_other_video(pipe, reference_image):
    def run(seeds):
        return pipe([reference_image] * 2, PROMPTS, seeds=seeds, num_inference_steps=3, progress=False).frames

    first, again, other = run([1, 2]), run([1, 2]), run([3, 2])
    assert np.array_equal(first, again)
    assert not np.array_equal(first[0], other[0])
    assert np.array_equal(first[1], other[1])  # each video has its own generator


def test_uncond_branch_gets_zero_reference_latent_and_cond_the_clean_one(pipe, reference_image):
    seen = []
    hook = pipe.components.unet.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    pipe([reference_image] * 2, PROMPTS, seeds=[0, 1], num_inference_steps=4, progress=False)
    hook.remove()
    reference = encode_frames(pipe.components.vae, images_to_tensor([reference_image] * 2, (64, 64)).unsqueeze(1))
    assert len(seen) == 4
    for sample in seen:
        assert sample.shape == (4, 4, 17, 8, 8)  # [uncond x2, cond x2], 16 frames + reference
        assert torch.equal(sample[:2, :, 16:], torch.zeros_like(sample[:2, :, 16:]))
        assert torch.allclose(sample[2:, :, 16:], reference, atol=1e-6)  # clean at every step
        assert torch.equal(sample[:2, :, :16], sample[2:, :, :16])


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(prompts=["a", "b"]), "one reference per prompt"),
        (dict(seeds=[1, 2]), "one seed per prompt"),
        (dict(height=60), "multiple of 8"),
        (dict(num_inference_steps=0), "num_inference_steps"),
        (dict(prompts="a person"), "list of strings"),
    ],
)
def test_bad_arguments_are_refused(pipe, reference_image, kwargs, match):
    call = dict(reference_images=[reference_image], prompts=["a person"], seeds=[0]) | kwargs
    with pytest.raises(ValueError, match=match):
        pipe(call.pop("reference_images"), call.pop("prompts"), progress=False, **call)
