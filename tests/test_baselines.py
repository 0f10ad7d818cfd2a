"""IP-Adapter baselines: tiny original-format weights through diffusers' real `load_ip_adapter`."""

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline
from diffusers.models.embeddings import ImageProjection, IPAdapterFaceIDImageProjection, IPAdapterPlusImageProjection
from tiny_models import TINY_IP_ADAPTER_WEIGHT_NAMES, save_tiny_ip_adapter

from videomaker.baselines import IP_ADAPTER_VARIANTS, IPAdapterBaseline
from videomaker.loading import load_components
from videomaker.pipeline import NEGATIVE_PROMPT_HUMAN

PROMPTS = ["A person wearing a blue hoodie.", "A person riding a horse."]
SAMPLING = dict(num_inference_steps=2, height=64, width=64, progress=False)
PROJECTIONS = {
    "ip-adapter": ImageProjection,
    "ip-adapter-plus": IPAdapterPlusImageProjection,
    "ip-adapter-faceid": IPAdapterFaceIDImageProjection,
}


def face_embedding(seed: int) -> np.ndarray:
    """A random unit vector standing in for an insightface `normed_embedding`."""
    vector = np.random.default_rng(seed).standard_normal(512).astype(np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture(scope="module")
def other_reference():
    from skimage import data

    return np.ascontiguousarray(data.chelsea())


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("ip_adapters")
    return {variant: save_tiny_ip_adapter(root / variant, variant) for variant in IP_ADAPTER_VARIANTS}


def load(weights, variant, **kwargs):
    return IPAdapterBaseline.from_preset(
        "tiny", variant=variant, weights=weights[variant], weight_name=TINY_IP_ADAPTER_WEIGHT_NAMES[variant], **kwargs
    )


@pytest.fixture(scope="module")
def baselines(weights):
    return {variant: load(weights, variant) for variant in IP_ADAPTER_VARIANTS}


@pytest.fixture(params=IP_ADAPTER_VARIANTS)
def baseline(request, baselines):
    return baselines[request.param]


def generate(baseline, references, prompts, seeds, embeddings=None, **kwargs):
    """`baseline(...)`, with face embeddings standing in for the references under FaceID."""
    if baseline.variant == "ip-adapter-faceid":
        kwargs["face_embeddings"] = embeddings
    return baseline(references, prompts, seeds=seeds, **SAMPLING, **kwargs)


@pytest.fixture(scope="module")
def plain_animatediff_video():
    """Prompt 0, seed 1 from a stock diffusers AnimateDiffPipeline on fresh tiny components, no adapter."""
    c = load_components("tiny")
    pipe = AnimateDiffPipeline(
        vae=c.vae, text_encoder=c.text_encoder, tokenizer=c.tokenizer, unet=c.unet, motion_adapter=None,
        scheduler=c.scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(
        prompt=PROMPTS[0], negative_prompt=NEGATIVE_PROMPT_HUMAN, num_frames=16,
        height=64, width=64, num_inference_steps=2, guidance_scale=8.0, generator=torch.Generator("cpu").manual_seed(1),
        output_type="np",
    ).frames[0]
    return (frames * 255).round().astype(np.uint8)


def test_loader_builds_the_variants_image_projection(baseline):
    projection = baseline.pipe.unet.encoder_hid_proj.image_projection_layers[0]
    assert type(projection) is PROJECTIONS[baseline.variant]
    assert (baseline.pipe.image_encoder is None) == (baseline.variant == "ip-adapter-faceid")


def test_seeds_references_and_batch_independence(baseline, reference_image, other_reference, plain_animatediff_video):
    faces = [face_embedding(0), face_embedding(0)]
    pair = generate(baseline, [reference_image] * 2, PROMPTS, [1, 2], faces)
    assert not np.array_equal(pair.frames[0], plain_animatediff_video)  # the adapter is active at scale 1
    assert pair.frames.shape == (2, 16, 64, 64, 3) and pair.frames.dtype == np.uint8
    assert pair.seeds == [1, 2] and pair.provenance["variant"] == baseline.variant
    assert pair.provenance["scheduler"] == "DDIM" and pair.provenance["guidance_scale"] == 8.0

    alone = generate(baseline, [reference_image], PROMPTS[1:], [2], faces[1:])
    assert np.array_equal(alone.frames[0], pair.frames[1])  # same seed, and the other video does not matter

    # Video 0 changes only the reference (or face embedding), video 1 only the seed.
    changed = generate(baseline, [other_reference, reference_image], PROMPTS, [1, 3], [face_embedding(1), faces[1]])
    assert not np.array_equal(changed.frames[0], pair.frames[0])
    assert not np.array_equal(changed.frames[1], pair.frames[1])


@pytest.mark.parametrize("variant", IP_ADAPTER_VARIANTS)
def test_scale_zero_is_plain_animatediff(weights, variant, reference_image, plain_animatediff_video):
    off = load(weights, variant, scale=0.0)
    video = generate(off, [reference_image], PROMPTS[:1], [1], [face_embedding(0)]).frames[0]
    # diffusers skips the image branch at scale 0 and the text attention is the same computation.
    assert np.array_equal(video, plain_animatediff_video)
    assert off.provenance["scale"] == 0.0


def test_faceid_normalises_the_embedding(baselines, reference_image):
    faceid = baselines["ip-adapter-faceid"]
    unit = faceid([reference_image], PROMPTS[:1], seeds=[0], face_embeddings=[face_embedding(0)], **SAMPLING)
    scaled = faceid([reference_image], PROMPTS[:1], seeds=[0], face_embeddings=[3 * face_embedding(0)], **SAMPLING)
    # v / |v| and 3v / |3v| may differ in the last float bit, hence one grey level of tolerance.
    assert np.abs(unit.frames.astype(int) - scaled.frames.astype(int)).max() <= 1


def test_unknown_variant_is_refused(weights):
    with pytest.raises(ValueError, match="`variant`.*'ip-adapter-xl'"):
        IPAdapterBaseline.from_preset("tiny", variant="ip-adapter-xl", weights=weights["ip-adapter"])


def test_face_embeddings_are_required_by_faceid_and_refused_elsewhere(baselines, reference_image):
    faceid = baselines["ip-adapter-faceid"]
    with pytest.raises(ValueError, match="`face_embeddings`"):
        faceid([reference_image], PROMPTS[:1], **SAMPLING)
    with pytest.raises(ValueError, match=r"`face_embeddings\[0\]` must have shape \(512,\)"):
        faceid([reference_image], PROMPTS[:1], face_embeddings=[np.zeros(32)], **SAMPLING)
    with pytest.raises(ValueError, match="`face_embeddings` is only used"):
        baselines["ip-adapter"]([reference_image], PROMPTS[:1], face_embeddings=[face_embedding(0)], **SAMPLING)


def test_missing_weights_say_how_to_stage_them(tmp_path):
    with pytest.raises(OSError, match="hf download h94/IP-Adapter .*ip-adapter_sd15.safetensors.*weights=DIR"):
        IPAdapterBaseline.from_preset("tiny", variant="ip-adapter", weights=tmp_path)
