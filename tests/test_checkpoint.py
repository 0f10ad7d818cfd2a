"""Trainable weights round-trip through safetensors + JSON and refuse what does not fit."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from videomaker.checkpoint import METADATA_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint
from videomaker.pipeline import VideoMakerPipeline
from videomaker.pisa import PISASwitches
from videomaker.trainable import select_trainable


def perturb_trainable(unet, switches, seed=0):
    """Stand in for training: move every trainable weight so a checkpoint differs from the base."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if name in set(select_trainable(unet, update_motion=switches.update_motion)):
                parameter.add_(torch.randn(parameter.shape, generator=g) * 0.05)


@pytest.mark.parametrize("switches", [PISASwitches(), PISASwitches(ref_in_motion=False, update_motion=False)], ids=str)
def test_save_load_reproduces_outputs_bit_for_bit(tiny, tmp_path, reference_image, switches):
    trained = VideoMakerPipeline(tiny, switches=switches)
    perturb_trainable(tiny.unet, switches)
    save_checkpoint(tmp_path / "ckpt", tiny.unet, preset="tiny", switches=switches, global_step=12)
    call = dict(seeds=[4], num_inference_steps=3, progress=False)
    expected = trained([reference_image], ["A person wearing sunglasses."], **call).frames

    loaded = VideoMakerPipeline.from_preset("tiny", checkpoint=tmp_path / "ckpt")
    assert loaded.switches == switches
    actual = loaded([reference_image], ["A person wearing sunglasses."], **call).frames
    assert np.array_equal(actual, expected)
    base = VideoMakerPipeline.from_preset("tiny")([reference_image], ["A person wearing sunglasses."], **call).frames
    assert not np.array_equal(base, expected)

    metadata = json.loads((tmp_path / "ckpt" / METADATA_FILE).read_text())
    assert metadata["preset"] == "tiny" and metadata["global_step"] == 12
    assert metadata["switches"] == {
        "ref_in_cross_attn": True,
        "ref_in_motion": switches.ref_in_motion,
        "update_motion": switches.update_motion,
    }
    stored = load_file(tmp_path / "ckpt" / WEIGHTS_FILE)
    assert any(".motion_modules." in k for k in stored) == switches.update_motion


def test_missing_key_is_named(tiny, tmp_path):
    save_checkpoint(tmp_path, tiny.unet, preset="tiny", switches=PISASwitches(), global_step=1)
    tensors = load_file(tmp_path / WEIGHTS_FILE)
    dropped = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight"
    del tensors[dropped]
    tensors["not.a.parameter"] = torch.zeros(1)
    save_file(tensors, tmp_path / WEIGHTS_FILE)
    with pytest.raises(ValueError, match=rf"missing keys \['{dropped}'\]; unexpected keys \['not.a.parameter'\]"):
        load_checkpoint(tmp_path).apply_to(tiny.unet, preset="tiny")


def test_mismatched_preset_is_refused(tiny, tmp_path):
    save_checkpoint(tmp_path, tiny.unet, preset="paper", switches=PISASwitches(), global_step=1)
    with pytest.raises(ValueError, match="trained on preset 'paper', but the model is preset 'tiny'"):
        VideoMakerPipeline.from_preset("tiny", checkpoint=tmp_path)


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=WEIGHTS_FILE):
        load_checkpoint(tmp_path)
