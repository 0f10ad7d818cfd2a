"""Inference as the released code runs it: scheduler from the backbone's stored config, references, negative prompts."""

import json

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from videomaker.loading import load_components, save_preset
from videomaker.references import load_reference, prepare_reference

# A stored scheduler config unlike DDIMScheduler's defaults and unlike SD1.5's (other betas), as a
# backbone's scheduler/scheduler_config.json (SD1.5 lineage stores a PNDMScheduler config).
STORED = {
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "num_train_timesteps": 1000,
    "beta_start": 0.001,
    "beta_end": 0.015,
    "beta_schedule": "scaled_linear",
    "trained_betas": None,
    "clip_sample": True,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 0,
    "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}
OVERRIDES = {"clip_sample": False, "timestep_spacing": "linspace", "beta_schedule": "linear", "steps_offset": 1}
BENCHMARK_NEGATIVE = (
    "asymmetry, worst quality, low quality, illustration, 3d, 2d, painting, cartoons, sketch, multiple "
    "people, text on the screen, nobody, awkward angles, Facial blur"
)


@pytest.fixture(scope="module")
def staged_backbone(tmp_path_factory):
    """The tiny preset saved as pretrained directories, its backbone given a stored scheduler config."""
    directory = save_preset("tiny", tmp_path_factory.mktemp("preset") / "tiny")
    (directory / "base" / "scheduler").mkdir()
    (directory / "base" / "scheduler" / "scheduler_config.json").write_text(json.dumps(STORED))
    return directory


def independent_last_step(stored: dict, steps: int, sample: torch.Tensor, eps: torch.Tensor, *, alpha_to_one: bool):
    """DDIM (eta 0) written out: linear betas from the stored ends, linspace timesteps, the final alpha."""
    betas = np.linspace(stored["beta_start"], stored["beta_end"], stored["num_train_timesteps"], dtype=np.float64)
    alphas_cumprod = np.cumprod(1.0 - betas)
    timesteps = np.linspace(0, stored["num_train_timesteps"] - 1, steps).round()[::-1].astype(np.int64)
    t = int(timesteps[-1])
    prev = t - stored["num_train_timesteps"] // steps
    a_t = alphas_cumprod[t]
    a_prev = alphas_cumprod[prev] if prev >= 0 else (1.0 if alpha_to_one else alphas_cumprod[0])
    x0 = (sample.double() - np.sqrt(1 - a_t) * eps.double()) / np.sqrt(a_t)
    return timesteps, alphas_cumprod, np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps.double()


def test_scheduler_is_the_stored_config_plus_the_release_overrides(staged_backbone):
    components = load_components(staged_backbone)
    config = components.scheduler.config
    for key, value in OVERRIDES.items():
        assert config[key] == value, key
    for key in ("beta_start", "beta_end", "set_alpha_to_one", "num_train_timesteps", "prediction_type"):
        assert config[key] == STORED[key], key  # from the stored file, not DDIMScheduler's defaults
    origin = components.scheduler_origin
    assert origin.source == f"{staged_backbone / 'base'}/scheduler" and origin.fallback_reason is None

    steps = 5
    components.scheduler.set_timesteps(steps)
    g = torch.Generator().manual_seed(0)
    sample, eps = torch.randn(1, 4, 2, 3, 3, generator=g), torch.randn(1, 4, 2, 3, 3, generator=g)
    timesteps, alphas_cumprod, expected = independent_last_step(STORED, steps, sample, eps, alpha_to_one=False)
    assert components.scheduler.timesteps.tolist() == timesteps.tolist()
    assert np.allclose(components.scheduler.alphas_cumprod.double().numpy(), alphas_cumprod, rtol=1e-5)
    last = components.scheduler.step(eps, int(timesteps[-1]), sample, eta=0.0).prev_sample
    assert torch.allclose(last.double(), expected, atol=1e-5)
    # With DDIMScheduler's default set_alpha_to_one=True the last step would land elsewhere.
    _, _, with_default = independent_last_step(STORED, steps, sample, eps, alpha_to_one=True)
    assert not torch.allclose(last.double(), with_default, atol=1e-3)


def test_training_noise_uses_the_same_schedule(staged_backbone):
    """add_noise (training) reads the alphas of the very scheduler inference samples with."""
    components = load_components(staged_backbone)
    betas = np.linspace(STORED["beta_start"], STORED["beta_end"], 1000)
    a = np.cumprod(1 - betas)
    x, noise, t = torch.ones(1, 4, 1, 2, 2), torch.full((1, 4, 1, 2, 2), 2.0), torch.tensor([500])
    noisy = components.scheduler.add_noise(x, noise, t)
    assert torch.allclose(noisy, torch.full_like(x, float(np.sqrt(a[500]) + 2 * np.sqrt(1 - a[500]))), atol=1e-5)


def test_backbones_without_a_stored_scheduler_fall_back_with_a_recorded_reason(tmp_path, caplog):
    tiny = load_components("tiny")
    assert "random-initialised" in tiny.scheduler_origin.fallback_reason
    assert tiny.scheduler_origin.source == "fallback:sd15"
    config = tiny.scheduler.config
    assert (config.beta_start, config.beta_end, config.set_alpha_to_one) == (0.00085, 0.012, False)  # SD1.5's stored values
    assert all(config[key] == value for key, value in OVERRIDES.items())

    saved = save_preset("tiny", tmp_path / "tiny")  # a backbone directory without scheduler/
    assert not (saved / "base" / "scheduler").exists()
    with caplog.at_level("WARNING", logger="videomaker.scheduling"):
        components = load_components(saved)
    assert "has no readable scheduler/ config" in components.scheduler_origin.fallback_reason
    assert any("SD1.5 stored config" in r.getMessage() for r in caplog.records)


def test_save_preset_keeps_the_backbones_stored_scheduler(staged_backbone, tmp_path):
    from dataclasses import replace

    from videomaker.presets import load_preset

    preset = replace(load_preset(staged_backbone), name="copy")
    copy = save_preset(preset, tmp_path / "copy")
    assert json.loads((copy / "base" / "scheduler" / "scheduler_config.json").read_text())["beta_start"] == STORED["beta_start"]


# --- references ----------------------------------------------------------------------------------


def _pattern(width: int, height: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(0)
    channels = 4 if mode == "RGBA" else 3
    array = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    if mode == "RGBA":
        array[..., 3] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]  # transparent on the left, opaque on the right
    return Image.fromarray(array, mode)


def test_exif_orientation_is_applied_then_the_image_is_stretched(tmp_path):
    path = tmp_path / "sideways.png"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    _pattern(40, 24).save(path, exif=exif)

    loaded = load_reference(str(path))
    upright = ImageOps.exif_transpose(Image.open(path)).convert("RGB")  # what diffusers' load_image does
    assert loaded.size == (24, 40) == upright.size  # width and height swapped by the tag
    assert np.array_equal(np.asarray(loaded), np.asarray(upright))

    from videomaker.pipeline import VideoMakerPipeline

    pipe = VideoMakerPipeline(load_components("tiny"))
    pixels = pipe.prepare_reference_pixels([loaded], 64, 64)
    expected = np.asarray(upright.resize((64, 64)), dtype=np.float32) / 127.5 - 1.0  # the released .resize((S, S))
    assert pixels.shape == (1, 3, 64, 64)
    assert np.allclose(pixels[0].permute(1, 2, 0).numpy(), expected, atol=1e-6)
    cropped = np.asarray(ImageOps.fit(upright, (64, 64)), dtype=np.float32) / 127.5 - 1.0  # a centre crop is not it
    assert not np.allclose(pixels[0].permute(1, 2, 0).numpy(), cropped, atol=1e-2)


def test_rgba_references_are_flattened_on_white(tmp_path):
    path = tmp_path / "cutout.png"
    image = _pattern(32, 16, "RGBA")
    image.save(path)
    rgba = np.asarray(image).astype(np.float64)
    alpha = rgba[..., 3:] / 255.0
    expected = np.round(rgba[..., :3] * alpha + 255.0 * (1 - alpha))  # "over" a white background
    loaded = np.asarray(load_reference(str(path))).astype(np.float64)
    assert np.abs(loaded - expected).max() <= 1  # PIL's integer rounding
    assert (loaded[:, 0] == 255).all()  # the fully transparent column is white, not the stored colour
    assert np.array_equal(np.asarray(prepare_reference(image, 16)), np.asarray(load_reference(str(path)).resize((16, 16))))
    dropped = np.asarray(load_reference(str(path), background=None))
    assert np.array_equal(dropped, np.asarray(image.convert("RGB")))  # what load_image's convert("RGB") would give


def test_unreadable_reference_is_refused_naming_it(tmp_path):
    path = tmp_path / "not_an_image.png"
    path.write_bytes(b"plain text")
    with pytest.raises(ValueError, match=r"--reference '.*not_an_image.png' is not a readable image"):
        load_reference(str(path))


# --- negative prompts and dtype of the configs that reproduce tables ------------------------------


def test_eval_paper_generates_in_float32_with_the_authors_benchmark_negative_prompt():
    from pathlib import Path

    from jobs.config import load_config
    from pipelines.evaluation.config import EvaluationConfig
    from videomaker.pipeline import NEGATIVE_PROMPT_BENCHMARK

    assert NEGATIVE_PROMPT_BENCHMARK == BENCHMARK_NEGATIVE
    config = load_config(EvaluationConfig, Path(__file__).parents[1] / "jobs/configs/eval_paper.yaml", ["benchmark=b.csv", "output_dir=o"])
    assert config.generation.negative_prompt == BENCHMARK_NEGATIVE and config.generation.dtype == "float32"


@pytest.mark.slow  # four tiny videos written with all their files
def test_generation_uses_the_configured_negative_prompt_for_every_subject(tmp_path, reference_image):
    from pipelines.evaluation.benchmarks import BenchmarkItem, BenchmarkSubject
    from pipelines.evaluation.config import GenerationSettings, MethodConfig
    from pipelines.evaluation.generation import GenerateBatch
    from videomaker.pipeline import NEGATIVE_PROMPT_OBJECT

    Image.fromarray(reference_image).save(tmp_path / "ref.png")
    subjects = [
        BenchmarkSubject("p1", "non_celebrity", "person", str(tmp_path / "ref.png")),
        BenchmarkSubject("d1", "object", "dog", str(tmp_path / "ref.png")),
    ]
    items = [BenchmarkItem(subject, 0, "A subject on a beach.", 0) for subject in subjects]

    batch = GenerateBatch(MethodConfig(preset="tiny"), GenerationSettings(num_inference_steps=1), str(tmp_path))

    def negatives(settings):
        out = tmp_path / f"videos-{settings.negative_prompt is None}"
        batch.settings, batch.videos_dir = settings, str(out)  # one loaded model, two settings
        batch._generate(items)
        return {item.subject.subject_id: json.loads((out / f"{item.item_id}.json").read_text())["negative_prompt"] for item in items}

    one = negatives(GenerationSettings(num_inference_steps=1, negative_prompt=BENCHMARK_NEGATIVE))
    assert one == {"p1": BENCHMARK_NEGATIVE, "d1": BENCHMARK_NEGATIVE}
    per_subject = negatives(GenerationSettings(num_inference_steps=1))
    assert per_subject["d1"] == NEGATIVE_PROMPT_OBJECT and per_subject["p1"].startswith("semi-realistic, cgi")
    from pipelines.configs import validate

    with pytest.raises(ValueError, match="generation.negative_prompt: got \\['a list'\\]"):
        validate(GenerationSettings, {"negative_prompt": ["a list"]}, where="generation")
