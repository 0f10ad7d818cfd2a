"""IP-Adapter baselines: tiny original-format weights through diffusers' real loaders, as the author ran them."""

import json

import numpy as np
import pytest
import torch
from diffusers import AnimateDiffPipeline, MotionAdapter
from diffusers.models.embeddings import ImageProjection, IPAdapterFaceIDImageProjection, IPAdapterPlusImageProjection
from PIL import Image

from tiny_models import (
    TINY_FACEID_LORA_WEIGHT_NAME,
    TINY_FACEID_PORTRAIT_TOKENS,
    TINY_FACEID_PORTRAIT_WEIGHT_NAME,
    TINY_IP_ADAPTER_WEIGHT_NAMES,
    faceid_lora_state,
    save_tiny_ip_adapter,
    save_tiny_motion_adapter,
    sd15_attention_layers,
)
from videomaker.baselines import IP_ADAPTER_VARIANTS, IPAdapterBaseline
from videomaker.loading import load_components, save_preset
from videomaker.pipeline import NEGATIVE_PROMPT_HUMAN

PROMPTS = ["A person wearing a blue hoodie.", "A person riding a horse."]
SAMPLING = dict(num_inference_steps=2, height=64, width=64, progress=False)
PROJECTIONS = {
    "ip-adapter": ImageProjection,
    "ip-adapter-plus": IPAdapterPlusImageProjection,
    "ip-adapter-faceid": IPAdapterFaceIDImageProjection,
}
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073])
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711])


def face_embedding(seed: int, count: int | None = None) -> np.ndarray:
    """A random unit vector (or `count` of them) standing in for insightface's `normed_embedding`."""
    shape = (512,) if count is None else (count, 512)
    vector = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return vector / np.linalg.norm(vector, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def other_reference():
    from skimage import data

    return np.ascontiguousarray(data.chelsea())  # 300 x 451: not square


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("ip_adapters")
    return {
        variant: save_tiny_ip_adapter(root / variant, variant, portrait=variant == "ip-adapter-faceid") for variant in IP_ADAPTER_VARIANTS
    }


def load(weights, variant, **kwargs):
    kwargs.setdefault("weight_name", TINY_IP_ADAPTER_WEIGHT_NAMES[variant])
    return IPAdapterBaseline.from_preset("tiny", variant=variant, weights=weights[variant], **kwargs)


@pytest.fixture(scope="module")
def baselines(weights):
    return {variant: load(weights, variant) for variant in IP_ADAPTER_VARIANTS}


@pytest.fixture(params=IP_ADAPTER_VARIANTS)
def baseline(request, baselines):
    return baselines[request.param]


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """The tiny preset staged like a user's offline copy, plus a v1-5-2-like motion adapter (mid block)."""
    root = tmp_path_factory.mktemp("staged")
    return {"preset": save_preset("tiny", root / "tiny"), "v152": save_tiny_motion_adapter(root / "motion-v1-5-2")}


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
        vae=c.vae,
        text_encoder=c.text_encoder,
        tokenizer=c.tokenizer,
        unet=c.unet,
        motion_adapter=None,
        scheduler=c.scheduler,
    )
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(
        prompt=PROMPTS[0],
        negative_prompt=NEGATIVE_PROMPT_HUMAN,
        num_frames=16,
        height=64,
        width=64,
        num_inference_steps=2,
        guidance_scale=8.0,
        generator=torch.Generator("cpu").manual_seed(1),
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
    # FaceID's LoRA changes the UNet itself, so it is left out here (lora_scale 0) to isolate the adapter.
    off = load(weights, variant, scale=0.0, **({"lora_scale": 0.0} if variant == "ip-adapter-faceid" else {}))
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


# --- the motion adapter, dtype and reference the author's scripts used -------------------------


def test_configured_motion_adapter_replaces_the_presets(staged, weights):
    baseline = IPAdapterBaseline.from_preset(
        staged["preset"],
        variant="ip-adapter",
        weights=weights["ip-adapter"],
        weight_name=TINY_IP_ADAPTER_WEIGHT_NAMES["ip-adapter"],
        motion_adapter=staged["v152"],
    )
    unet = baseline.pipe.unet
    adapter = MotionAdapter.from_pretrained(staged["v152"])
    assert hasattr(unet.mid_block, "motion_modules")  # v1-5-2's mid-block motion module is there...
    for ours, theirs in (
        (unet.mid_block.motion_modules, adapter.mid_block.motion_modules),
        (unet.down_blocks[0].motion_modules, adapter.down_blocks[0].motion_modules),
    ):
        for key, tensor in theirs.state_dict().items():  # ... with the configured file's weights
            assert torch.equal(ours.state_dict()[key], tensor), key
    assert baseline.provenance["motion_adapter"] == str(staged["v152"]) and baseline.provenance["motion_mid_block"]

    stock = IPAdapterBaseline.from_preset(
        staged["preset"], variant="ip-adapter", weights=weights["ip-adapter"], weight_name=TINY_IP_ADAPTER_WEIGHT_NAMES["ip-adapter"]
    )
    assert not hasattr(stock.pipe.unet.mid_block, "motion_modules") and not stock.provenance["motion_mid_block"]
    assert stock.provenance["motion_adapter"].endswith("motion_adapter")  # the staged preset's own


def test_motion_adapter_needs_a_pretrained_preset(staged, weights):
    with pytest.raises(ValueError, match="random-initialised; stage it first"):
        load(weights, "ip-adapter", motion_adapter=staged["v152"])


def test_float16_on_cpu_runs_as_float32_and_says_so(weights):
    baseline = load(weights, "ip-adapter", dtype=torch.float16)
    assert baseline.pipe.unet.dtype == torch.float32 and baseline.pipe.image_encoder.dtype == torch.float32
    record = baseline.provenance
    assert (record["dtype"], record["dtype_requested"]) == ("float32", "float16") and "CPU" in record["dtype_note"]
    assert load(weights, "ip-adapter").provenance["dtype_note"] is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_float16_on_a_gpu_is_float16(weights, reference_image):
    baseline = load(weights, "ip-adapter", dtype=torch.float16, device="cuda")
    assert baseline.pipe.unet.dtype == torch.float16 and baseline.pipe.image_encoder.dtype == torch.float16
    assert baseline.provenance["dtype"] == "float16" and baseline.provenance["dtype_note"] is None
    video = baseline([reference_image], PROMPTS[:1], seeds=[42], generator_device="cuda", **SAMPLING)
    assert video.frames.shape == (1, 16, 64, 64, 3) and video.provenance["generator_device"] == "cuda"


def _clip_pixels(image: Image.Image, size: int) -> np.ndarray:
    """CLIP's own preprocessing, written out: short side to `size` (bicubic), centre crop, mean/std."""
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.Resampling.BICUBIC)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    crop = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.float64) / 255
    return ((crop - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1)


@pytest.mark.parametrize(("variant", "expected_tokens"), [("ip-adapter", 4), ("ip-adapter-plus", 16)])
def test_image_encoder_sees_the_640_stretch_then_its_own_preprocessing(weights, variant, expected_tokens, other_reference):
    seen = []
    baseline = load(weights, variant, reference_size=640)
    hook = baseline.pipe.image_encoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        baseline([other_reference], PROMPTS[:1], seeds=[0], **SAMPLING)
    finally:
        hook.remove()
    size = baseline.pipe.image_encoder.config.image_size
    observed = seen[0][0].double().numpy()
    # The author's steps: load_image(path).resize((640, 640)) (PIL's default filter), then CLIP's processor.
    stretched = _clip_pixels(Image.fromarray(other_reference).resize((640, 640)), size)
    cropped = _clip_pixels(Image.fromarray(other_reference), size)  # what the encoder would see without it
    # transformers' torchvision backend rounds a few pixels differently from PIL: one grey level is 0.015 here.
    assert np.abs(observed - stretched).mean() < 1e-3 and np.abs(observed - stretched).max() < 0.03
    assert np.abs(observed - cropped).mean() > 0.1
    assert baseline.provenance["reference_size"] == 640 and baseline.provenance["image_tokens"] == expected_tokens
    assert baseline.provenance["image_processor"]["crop_size"] == {"height": size, "width": size}
    json.dumps(baseline.provenance)  # it goes into every video's sidecar


# --- IP-Adapter-FaceID's LoRA and the portrait variant -----------------------------------------


def _effective_weights(unet) -> dict[str, torch.Tensor]:
    """(out, in) weight each Linear of the UNet applies, read off its forward pass on the identity."""
    weights = {}
    for name, module in unet.named_modules():
        if ".lora_" in name or name.endswith(".base_layer") or not hasattr(module, "in_features"):
            continue
        if not isinstance(module, torch.nn.Linear) and not hasattr(module, "base_layer"):
            continue
        base = getattr(module, "base_layer", module)
        eye = torch.eye(base.in_features)
        with torch.no_grad():
            out = module(eye) - (base.bias if base.bias is not None else 0)
        weights[name] = out.T
    return weights


@pytest.fixture(scope="module")
def faceid_without_lora_weights(weights):
    return _effective_weights(load(weights, "ip-adapter-faceid", lora_scale=0.0).pipe.unet)


@pytest.mark.parametrize("lora_scale", [1.0, 0.6])
def test_faceid_lora_changes_exactly_the_spatial_attention_weights(weights, faceid_without_lora_weights, lora_scale):
    baseline = load(weights, "ip-adapter-faceid", lora_scale=lora_scale)
    changed = _effective_weights(baseline.pipe.unet)
    # Independent numbering: the position in a plain SD1.5 UNet's attn_processors, as IP-Adapter's code keys it.
    lora = faceid_lora_state(seed=1)  # what save_tiny_ip_adapter embedded (seed + 1)
    expected = dict(faceid_without_lora_weights)
    for n, (layer, _, _) in enumerate(sd15_attention_layers()):
        for projection, module in (("to_q", "to_q"), ("to_k", "to_k"), ("to_v", "to_v"), ("to_out", "to_out.0")):
            down, up = lora[f"{n}.{projection}_lora.down.weight"], lora[f"{n}.{projection}_lora.up.weight"]
            expected[f"{layer}.{module}"] = expected[f"{layer}.{module}"] + lora_scale * up @ down
    assert set(changed) == set(expected)
    touched = [name for name in expected if not torch.equal(expected[name], faceid_without_lora_weights[name])]
    assert len(touched) == 4 * len(sd15_attention_layers()) and not any("motion_modules" in name for name in touched)
    for name in expected:
        torch.testing.assert_close(changed[name], expected[name], atol=1e-5, rtol=1e-5, msg=name)
    assert baseline.provenance["lora"] == {"source": "ip-adapter-faceid_tiny.bin (embedded)", "scale": lora_scale, "layers": len(touched)}


def test_kohya_lora_file_applies_the_same_lora(weights, faceid_without_lora_weights):
    embedded = _effective_weights(load(weights, "ip-adapter-faceid").pipe.unet)
    from_file = load(weights, "ip-adapter-faceid", lora_weight_name=TINY_FACEID_LORA_WEIGHT_NAME)
    for name, weight in _effective_weights(from_file.pipe.unet).items():
        torch.testing.assert_close(weight, embedded[name], atol=1e-5, rtol=1e-5, msg=name)
    assert from_file.provenance["lora"]["source"] == TINY_FACEID_LORA_WEIGHT_NAME


def test_diffusers_own_faceid_lora_numbering_counts_motion_modules(weights):
    """Why the LoRA is mapped here: diffusers numbers all attn_processors, motion modules included."""
    unet = load_components("tiny").unet
    state = torch.load(weights["ip-adapter-faceid"] / TINY_IP_ADAPTER_WEIGHT_NAMES["ip-adapter-faceid"], weights_only=True)
    targets = {key.split(".processor.")[0] for key in unet._load_ip_adapter_loras([state])[0]}
    assert any("motion_modules" in target for target in targets)  # if this fails, diffusers fixed it


def test_faceid_portrait_has_no_lora_and_takes_several_faces(weights):
    portrait = load(weights, "ip-adapter-faceid", weight_name=TINY_FACEID_PORTRAIT_WEIGHT_NAME)
    assert portrait.provenance["lora"] is None and portrait.provenance["image_tokens"] == TINY_FACEID_PORTRAIT_TOKENS
    from videomaker.baselines import lora_layers

    assert lora_layers(portrait.pipe.unet) == []
    one = portrait([None], PROMPTS[:1], seeds=[0], face_embeddings=[face_embedding(0)], **SAMPLING)
    stack = face_embedding(0, count=3)
    three = portrait([None], PROMPTS[:1], seeds=[0], face_embeddings=[stack], **SAMPLING)
    assert three.provenance["face_embeddings_per_video"] == [3] and one.provenance["face_embeddings_per_video"] == [1]
    assert not np.array_equal(one.frames, three.frames)  # the two extra faces' 32 tokens are attended to


def test_faceid_lora_from_another_base_is_refused(tmp_path, weights):
    state = torch.load(weights["ip-adapter-faceid"] / TINY_IP_ADAPTER_WEIGHT_NAMES["ip-adapter-faceid"], weights_only=True)
    state["ip_adapter"]["40.to_q_lora.down.weight"] = torch.zeros(4, 32)
    state["ip_adapter"]["40.to_q_lora.up.weight"] = torch.zeros(32, 4)
    torch.save(state, tmp_path / "other.bin")
    with pytest.raises(ValueError, match="'40.to_q_lora.*only 8 spatial attention layers"):
        IPAdapterBaseline.from_preset("tiny", variant="ip-adapter-faceid", weights=tmp_path, weight_name="other.bin")
    (tmp_path / "truncated.bin").write_bytes((tmp_path / "other.bin").read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated.bin' is not a readable torch state dict"):
        IPAdapterBaseline.from_preset("tiny", variant="ip-adapter-faceid", weights=tmp_path, weight_name="truncated.bin")


def test_faceid_from_the_hub_cache_offline(tmp_path, monkeypatch, weights):
    """`weights: h94/IP-Adapter-FaceID` resolves from a hub cache with HF_HUB_OFFLINE=1, as a user's would."""
    import shutil

    snapshot = tmp_path / "hub" / "models--h94--IP-Adapter-FaceID" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(weights["ip-adapter-faceid"] / TINY_IP_ADAPTER_WEIGHT_NAMES["ip-adapter-faceid"], snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    baseline = IPAdapterBaseline.from_preset(
        "tiny", variant="ip-adapter-faceid", weights="h94/IP-Adapter-FaceID", weight_name=TINY_IP_ADAPTER_WEIGHT_NAMES["ip-adapter-faceid"]
    )
    assert baseline.provenance["lora"]["layers"] == 32 and baseline.provenance["weights"] == "h94/IP-Adapter-FaceID"


# --- bad input ---------------------------------------------------------------------------------


def test_unknown_variant_is_refused(weights):
    with pytest.raises(ValueError, match="`variant`.*'ip-adapter-xl'"):
        IPAdapterBaseline.from_preset("tiny", variant="ip-adapter-xl", weights=weights["ip-adapter"])


def test_lora_options_are_faceid_only(weights):
    with pytest.raises(ValueError, match="only used by 'ip-adapter-faceid'"):
        load(weights, "ip-adapter", lora_weight_name=TINY_FACEID_LORA_WEIGHT_NAME)


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
