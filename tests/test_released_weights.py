"""The authors' released weights (SugerWu/VideoMaker): a full UNetMotionModel state dict saved with torch.save.

Files are written here in that layout from the tiny preset's UNet (as the authors saved theirs)
and loaded through every `--checkpoint` path a user takes: a local file, a staged directory, and
`hf:SugerWu/VideoMaker/<file>` from the hub cache (HF_HUB_OFFLINE=1, HF_HOME under the test
session's temporary home). Outputs must equal the same weights loaded in this project's own
checkpoint format. The paper preset is checked on the meta device: every trainable key found.
"""

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from videomaker.checkpoint import load_checkpoint, save_checkpoint
from videomaker.loading import build_unet_skeleton, load_components
from videomaker.pipeline import VideoMakerPipeline
from videomaker.pisa import PISASwitches
from videomaker.presets import load_preset
from videomaker.released import ReleasedCheckpoint

PROMPT = ["A person wearing a red scarf."]
CALL = dict(seeds=[3], num_inference_steps=1, progress=False)
HUMAN = "human_pytorch_model.bin"

# Independent statement of what the authors trained: the PISA projections of the spatial attn1
# layers (not those inside motion modules) and every motion-module parameter.
SPATIAL_ATTN1 = re.compile(
    r"^(down_blocks\.\d+|mid_block|up_blocks\.\d+)\.attentions\.\d+\.transformer_blocks\.\d+\.attn1\."
    r"(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$"
)


def expected_trainable(names) -> set[str]:
    return {n for n in names if ("motion_modules." in n) or SPATIAL_ATTN1.match(n)}


def trained_unet(seed: int = 0):
    """Tiny components whose trainable weights moved (stands in for the authors' training)."""
    components = load_components("tiny")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in components.unet.named_parameters():
            if name in expected_trainable([name]):
                parameter.add_(torch.randn(parameter.shape, generator=g) * 0.05)
    return components


def save_released(unet, path: Path, *, transform=None) -> Path:
    """torch.save of the whole UNetMotionModel state dict, as the released files are."""
    state = unet.state_dict()
    if transform is not None:
        state = transform(dict(state))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def put_in_hub_cache(repo: str, filename: str, source: Path) -> Path:
    """Lay a file out as huggingface_hub's cache holds a download (refs/main -> snapshots/<commit>/FILE)."""
    from huggingface_hub import constants

    root = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    target = root / "snapshots" / commit / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    return target


@pytest.fixture(scope="module")
def released(tmp_path_factory, reference_image):
    """A released-format file and a native checkpoint of the same trained weights, plus the native outputs."""
    root = tmp_path_factory.mktemp("released")
    trained = trained_unet()
    file = save_released(trained.unet, root / "download" / HUMAN)
    save_checkpoint(root / "native", trained.unet, preset="tiny", switches=PISASwitches(), global_step=0)
    native = VideoMakerPipeline.from_preset("tiny", checkpoint=root / "native")
    expected = native([reference_image], PROMPT, **CALL).frames
    return {
        "root": root,
        "file": file,
        "expected": expected,
        "native": native.components.unet.state_dict(),
        "trainable": expected_trainable(name for name, _ in trained.unet.named_parameters()),
    }


def assert_same_model(checkpoint, released, reference_image=None):
    """Loaded through `checkpoint`, the UNet equals the natively loaded one (and, when run, so do the videos)."""
    pipe = VideoMakerPipeline.from_preset("tiny", checkpoint=checkpoint)
    assert pipe.switches == PISASwitches()
    state = pipe.components.unet.state_dict()
    assert state.keys() == released["native"].keys()
    assert all(torch.equal(state[k], released["native"][k]) for k in state)
    assert pipe.checkpoint_report["format"] == "released" and pipe.checkpoint_report["frozen_differing"] == 0
    assert pipe.checkpoint_report["trainable_loaded"] == len(released["trainable"])
    if reference_image is not None:
        out = pipe([reference_image], PROMPT, **CALL)
        assert np.array_equal(out.frames, released["expected"])
        assert out.provenance["checkpoint_report"] == pipe.checkpoint_report
    return pipe


def test_local_file_gives_the_outputs_of_the_same_weights_loaded_natively(released, reference_image):
    assert_same_model(released["file"], released, reference_image)
    base = load_components("tiny").unet.state_dict()
    changed = {k for k in base if not torch.equal(base[k], released["native"][k])}
    assert changed == released["trainable"]  # the file really changed the model, and only what is trained


def test_staged_directory_and_models_stage_of_the_hub_file(released, reference_image, tmp_path):
    from jobs import models
    from jobs.staging import resolve_weight, verify

    put_in_hub_cache("SugerWu/VideoMaker", HUMAN, released["file"])
    # `models stage --released` fetches through the hub cache; the object file is not cached, so it fails, named.
    (tmp_path / "nothing.yaml").write_text("{}\n")  # a config naming no other weight
    code = models.main(["stage", str(tmp_path / "models"), "--released", "--no-progress", "--config", str(tmp_path / "nothing.yaml")])
    assert code == 1  # StagingError for videomaker-object only
    manifest = json.loads((tmp_path / "models" / "MANIFEST.json").read_text())
    staged = {w["name"]: w for w in manifest["weights"]}
    assert staged["videomaker-human"]["path"] == f"videomaker-human/{HUMAN}" and "videomaker-object" not in staged
    assert verify(tmp_path / "models").ok

    folder = tmp_path / "models" / "videomaker-human"
    assert_same_model(folder, released)  # a staged directory holding one released file
    resolved = resolve_weight(f"hf:SugerWu/VideoMaker/{HUMAN}", tmp_path / "models")
    assert resolved == str(folder / HUMAN)
    assert_same_model(resolved, released)


def test_hf_uri_reads_the_hub_cache_offline(released, reference_image):
    put_in_hub_cache("SugerWu/VideoMaker", HUMAN, released["file"])
    checkpoint = load_checkpoint(f"hf:SugerWu/VideoMaker/{HUMAN}")
    assert isinstance(checkpoint, ReleasedCheckpoint)
    assert_same_model(f"hf:SugerWu/VideoMaker/{HUMAN}", released, reference_image)
    with pytest.raises(FileNotFoundError, match=r"hf:SugerWu/VideoMaker/object_pytorch_model.bin.*videomaker models stage"):
        load_checkpoint("hf:SugerWu/VideoMaker/object_pytorch_model.bin")  # not cached, offline
    with pytest.raises(ValueError, match="hf:OWNER/REPO/FILE"):
        load_checkpoint("hf:SugerWu")


@pytest.mark.slow  # a whole `videomaker generate` run
def test_generate_command_takes_the_hf_uri_with_a_staged_models_dir(released, tmp_path):
    from jobs.cli import main
    from jobs.staging import stage
    from jobs.weight_sources import WeightSource

    stage(
        [WeightSource("videomaker-human", "local", str(released["file"]), aliases=(f"hf:SugerWu/VideoMaker/{HUMAN}",))],
        tmp_path / "models",
        progress=False,
    )
    code = main(
        [
            "generate",
            "--preset",
            "tiny",
            "--checkpoint",
            f"hf:SugerWu/VideoMaker/{HUMAN}",
            "--models-dir",
            str(tmp_path / "models"),
            "--reference",
            "skimage:astronaut",
            "--prompt",
            PROMPT[0],
            "--seed",
            "3",
            "--steps",
            "1",
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    sidecar = json.loads((tmp_path / "out" / "000_seed3.json").read_text())
    assert sidecar["checkpoint"] == str(tmp_path / "models" / "videomaker-human" / HUMAN)
    assert sidecar["checkpoint_report"]["trainable_loaded"] == len(released["trainable"])


def test_module_prefix_is_stripped_and_frozen_tensors_are_compared(released, tmp_path):
    base = load_components("tiny").unet
    frozen_key = "conv_in.weight"

    def prefixed_and_changed(state):
        state[frozen_key] = state[frozen_key] + 0.25
        return {f"module.{k}": v for k, v in state.items()}

    file = save_released(trained_unet().unet, tmp_path / "ddp.bin", transform=prefixed_and_changed)
    checkpoint = load_checkpoint(file)
    report = checkpoint.apply_to(base, preset="tiny")
    assert report["frozen_differing"] == 1 and report["frozen_differing_examples"] == [frozen_key]
    assert report["frozen_max_abs_diff"] == pytest.approx(0.25, abs=1e-6)
    assert not torch.equal(base.state_dict()[frozen_key], checkpoint.tensors[frozen_key])  # compared, not loaded
    checkpoint.apply_to(base, preset="tiny", frozen="load")  # as the released strict=False load did
    assert torch.equal(base.state_dict()[frozen_key], checkpoint.tensors[frozen_key])


class NotATensor:
    pass


@pytest.mark.parametrize("case", ["truncated", "list", "non-tensor values", "pickled object", "empty"])
def test_a_truncated_or_wrong_file_is_refused_naming_it(released, tmp_path, case):
    file = tmp_path / "bad_pytorch_model.bin"
    if case == "truncated":
        data = released["file"].read_bytes()
        file.write_bytes(data[: len(data) // 2])
        message = r"bad_pytorch_model.bin.*could not be read as a torch-saved state dict.*truncated"
    elif case == "list":
        torch.save([torch.zeros(1)], file)
        message = r"bad_pytorch_model.bin.*holds a list, not a torch-saved state dict"
    elif case == "non-tensor values":
        torch.save({"conv_in.weight": 1.0}, file)
        message = r"is a dict but not a state dict.*'conv_in.weight'"
    elif case == "pickled object":  # weights_only refuses anything but tensors and containers
        torch.save({"conv_in.weight": NotATensor()}, file)
        message = r"bad_pytorch_model.bin.*could not be read"
    else:
        torch.save({}, file)
        message = r"holds a dict \(empty\)"
    with pytest.raises(ValueError, match=message):
        load_checkpoint(file)


def test_wrong_layout_names_missing_and_unexpected_keys(tmp_path):
    dropped = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.weight"

    def wrong(state):
        del state[dropped]
        state["image_proj.weight"] = torch.zeros(2)
        return state

    file = save_released(load_components("tiny").unet, tmp_path / HUMAN, transform=wrong)
    with pytest.raises(ValueError, match=rf"missing keys 1: \['{re.escape(dropped)}'\]; unexpected keys 1: \['image_proj.weight'\]"):
        load_checkpoint(file).apply_to(load_components("tiny").unet, preset="tiny")


def _variant(**motion_or_unet):
    tiny = load_preset("tiny")
    arch = json.loads(json.dumps(tiny.architecture))
    for part, changes in motion_or_unet.items():
        arch[part].update(changes)
    return replace(tiny, name="tiny-variant", architecture=arch)


def test_a_file_of_another_preset_is_refused_naming_the_fix(tmp_path):
    file = save_released(load_components("tiny").unet, tmp_path / HUMAN)
    checkpoint = load_checkpoint(file)
    with_mid = build_unet_skeleton(_variant(motion_adapter={"use_motion_mid_block": True}), device="cpu")
    with pytest.raises(ValueError, match=r"mid_block\.motion_modules.*motion adapter v1-5-3 \(preset 'paper'\)"):
        checkpoint.apply_to(with_mid, preset="tiny-variant")
    wider = build_unet_skeleton(
        _variant(unet={"block_out_channels": [16, 64]}, motion_adapter={"block_out_channels": [16, 64]}), device="cpu"
    )
    with pytest.raises(ValueError, match=r"made for another preset than 'tiny-variant'.*pass `--preset paper`"):
        checkpoint.apply_to(wider, preset="tiny-variant")


def test_paper_preset_layout_on_the_meta_device_finds_every_trainable_key():
    from videomaker.checkpoint import trainable_state_dict

    skeleton = build_unet_skeleton("paper")  # meta device: names and shapes only
    state = skeleton.state_dict()
    assert all(t.device.type == "meta" for t in state.values())
    checkpoint = ReleasedCheckpoint("paper-layout", {k: torch.empty(v.shape, device="meta") for k, v in state.items()})
    checkpoint.check_against({k: v.shape for k, v in state.items()}, preset="paper")

    found = set(checkpoint.trainable_keys(name for name, _ in skeleton.named_parameters()))
    assert found == expected_trainable(dict(skeleton.named_parameters()))
    assert found == set(trainable_state_dict(skeleton, PISASwitches()))  # what a native checkpoint of the paper preset holds
    spatial = [k for k in found if SPATIAL_ATTN1.match(k)]
    assert len(spatial) == 16 * 5  # 16 layers x (to_q, to_k, to_v, to_out.0 weight and bias)
    count = {k: v.numel() for k, v in state.items()}
    assert round(sum(count[k] for k in spatial) / 1e6, 1) == 49.6
    assert round(sum(count[k] for k in found if "motion_modules." in k) / 1e6, 1) == 417.1
    assert not any(k.startswith("mid_block.motion_modules.") for k in state)  # v1-5-3: no mid-block motion module

    missing = dict(checkpoint.tensors)
    key = sorted(k for k in found if "motion_modules." in k)[0]
    del missing[key]
    with pytest.raises(ValueError, match=rf"missing keys 1: \['{re.escape(key)}'\]"):
        ReleasedCheckpoint("paper-layout", missing).check_against({k: v.shape for k, v in state.items()}, preset="paper")


def test_directory_dispatch_and_other_files(tmp_path):
    unet = load_components("tiny").unet
    save_released(unet, tmp_path / "two" / HUMAN)
    save_released(unet, tmp_path / "two" / "object_pytorch_model.bin")
    with pytest.raises(ValueError, match="several released-format files"):
        load_checkpoint(tmp_path / "two")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ValueError, match="neither a released-format state dict"):
        load_checkpoint(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="or one released-format file"):
        load_checkpoint(tmp_path / "empty")
