"""Presets as data, the offline CLIP tokenizer, and the save -> pretrained-loader round trip."""

import open_clip
import pytest
import torch

from videomaker.loading import build_clip_tokenizer, load_components, save_preset
from videomaker.presets import list_presets, load_preset


def test_shipped_presets():
    assert {"tiny", "paper"} <= set(list_presets())
    paper = load_preset("paper")
    assert paper.base_model == "SG161222/Realistic_Vision_V5.1_noVAE"
    assert paper.motion_adapter == "guoyww/animatediff-motion-adapter-v1-5-3"
    assert paper.resolution == 512 and paper.num_frames == 16
    assert load_preset("tiny").is_random_init


def test_unknown_preset_lists_the_available_ones():
    with pytest.raises(ValueError, match=r"Available: \['paper', 'tiny'\]"):
        load_preset("large")


@pytest.mark.parametrize(
    "prompt",
    [
        "A person wearing a Superman outfit.",
        "A person is enjoying a cup of coffee in a cozy café.",
        "A cat is playing in the snow, rolling and rolling, snowflakes flying.",
    ],
)
def test_tokenizer_is_the_real_clip_bpe(prompt):
    ours = build_clip_tokenizer()(prompt, padding="max_length", max_length=77).input_ids
    reference = open_clip.get_tokenizer("ViT-B-32")([prompt])[0].tolist()
    length = reference.index(49407) + 1
    assert ours[:length] == reference[:length]
    assert len(ours) == 77 and ours[length:] == [49407] * (77 - length)  # padded with <|endoftext|> like SD1.5


def test_saved_preset_loads_through_the_pretrained_loader(tmp_path):
    save_preset("tiny", tmp_path / "tiny")
    saved = load_preset(tmp_path / "tiny")
    assert not saved.is_random_init and saved.name == "tiny"
    assert (tmp_path / "tiny" / "base" / "unet" / "config.json").is_file()
    from_disk, in_memory = load_components(saved), load_components("tiny")
    sample = torch.randn(1, 4, 17, 8, 8)
    text = torch.randn(17, 77, 32)
    with torch.no_grad():
        a = from_disk.unet(sample, torch.tensor([500]), encoder_hidden_states=text).sample
        b = in_memory.unet(sample, torch.tensor([500]), encoder_hidden_states=text).sample
    assert torch.equal(a, b)
    assert from_disk.tokenizer("a dog").input_ids == in_memory.tokenizer("a dog").input_ids


def test_unreachable_weights_say_how_to_stage_them(tmp_path):
    preset = load_preset("paper").with_sources(base_model=str(tmp_path / "missing"), motion_adapter=str(tmp_path / "missing2"))
    with pytest.raises(OSError, match="stage the weights"):
        load_components(preset)
