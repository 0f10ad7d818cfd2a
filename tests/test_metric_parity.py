"""The metric backends equal their reference implementations, loaded the way a user loads them.

No published weights are needed: random weights in each release's own layout and format go
where a user's machine holds them (a local file, a staged directory, the Hugging Face hub cache,
torch hub's checkpoint cache) and through the backend; the same weights go into an independent
implementation of the original model (OpenAI's `clip` package; a DINO ViT written here after the
original design; RAFT run with VBench's input handling, written here). Unit embeddings must agree
within 1e-5 (float32) and DD pair scores within 1e-4.
"""

import json
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metrics.backends.clip import OpenCLIPEmbedder
from metrics.backends.dino import DINOEmbedder
from metrics.backends.flow import RAFTFlow
from metrics.dynamic_degree import pair_score

UNIT_TOLERANCE = 1e-5
PAIR_SCORE_TOLERANCE = 1e-4
PROMPTS = ["A person wearing a blue hoodie.", "a cat is running on the grass, 4k", "Astronaut!  holding   a  helmet"]
OPENAI_VIT_B_32 = dict(
    embed_dim=512,
    image_resolution=224,
    vision_layers=12,
    vision_width=768,
    vision_patch_size=32,
    context_length=77,
    vocab_size=49408,
    transformer_width=512,
    transformer_heads=8,
    transformer_layers=12,
)
OPENAI_HUB_REPO = "timm/vit_base_patch32_clip_224.openai"  # where open_clip 3.x reads the `openai` tag of ViT-B-32
DINO_HUB_REPO = "facebook/dino-vits16"
# config.json of facebook/dino-vits16 as the hub conversion wrote it: transformers' ViT defaults
# (layer_norm_eps 1e-12) with the ViT-S/16 sizes.
DINO_HUB_CONFIG = {
    "architectures": ["ViTModel"],
    "attention_probs_dropout_prob": 0.0,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "hidden_size": 384,
    "image_size": 224,
    "initializer_range": 0.02,
    "intermediate_size": 1536,
    "layer_norm_eps": 1e-12,
    "model_type": "vit",
    "num_attention_heads": 6,
    "num_channels": 3,
    "num_hidden_layers": 12,
    "patch_size": 16,
    "qkv_bias": True,
    "torch_dtype": "float32",
}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def max_unit_difference(a, b) -> float:
    return float(np.abs(unit(a) - unit(b)).max())


@pytest.fixture(scope="module")
def images():
    """Photos of three shapes (portrait, landscape, square), so resize and crop both matter."""
    from skimage import data

    astronaut, coffee = data.astronaut(), data.coffee()
    return [
        np.ascontiguousarray(astronaut[20:470, 100:400]),
        np.ascontiguousarray(coffee[30:330, :]),
        np.ascontiguousarray(astronaut[:300, 150:450]),
    ]


def hub_cache_entry(hub_cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """Files laid out as huggingface_hub caches a repo: blobs behind a snapshot of `refs/main`."""
    revision = "0123456789abcdef0123456789abcdef01234567"
    root = hub_cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    snapshot = root / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, payload in files.items():
        (snapshot / name).write_bytes(payload)
    return snapshot


def safetensors_bytes(state: dict) -> bytes:
    from safetensors.torch import save

    return save({key: value.contiguous() for key, value in state.items()})


# --- CLIP: OpenAI's weights need QuickGELU --------------------------------------------------------------------


@pytest.fixture(scope="module")
def openai_state_dict():
    """Random ViT-B/32 weights in OpenAI's layout and precision (float16, as OpenAI ships them)."""
    import clip

    torch.manual_seed(0)
    model = clip.model.CLIP(**OPENAI_VIT_B_32)
    return {key: value.half() for key, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def openai_expected(openai_state_dict, images):
    """Unit image and text embeddings of OpenAI's own CLIP with its own preprocessing and tokenizer."""
    import clip

    reference = clip.model.build_model(dict(openai_state_dict)).float().eval()  # the real ViT-B/32 config, from the weights
    preprocess = clip.clip._transform(reference.visual.input_resolution)
    from PIL import Image

    with torch.no_grad():
        pixels = torch.stack([preprocess(Image.fromarray(image)) for image in images])
        image_embeddings = reference.encode_image(pixels).numpy()
        text_embeddings = reference.encode_text(clip.tokenize(PROMPTS)).numpy()
    return unit(image_embeddings), unit(text_embeddings)


def clip_difference(embedder, images, expected) -> tuple[float, float]:
    expected_images, expected_texts = expected
    return (
        max_unit_difference(embedder.embed_images(images), expected_images),
        max_unit_difference(embedder.embed_texts(PROMPTS), expected_texts),
    )


def save_torchscript_release(state: dict, path: Path) -> Path:
    """A TorchScript archive holding `state` plus the three integer buffers of OpenAI's release.

    OpenAI ships `ViT-B-32.pt` as a traced TorchScript model; what a loader reads from it is its
    state dict, so a scripted module with the same buffers is that format with a trivial forward.
    """

    class Node(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Node()
    for key, value in state.items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, Node())
            module = getattr(module, name)
        module.register_buffer(leaf, value)
    for name, value in (("input_resolution", 224), ("context_length", 77), ("vocab_size", 49408)):
        root.register_buffer(name, torch.tensor(value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
        torch.jit.script(root).save(str(path))
    return path


def test_clip_from_openai_file_builds_quick_gelu_and_equals_openai_clip(openai_state_dict, openai_expected, images, tmp_path):
    path = tmp_path / "ViT-B-32.pt"  # the name OpenAI's release (and clip.load's cache) has
    torch.save(openai_state_dict, path)
    embedder = OpenCLIPEmbedder("ViT-B-32", str(path))
    assert embedder.describe()["activation"] == "QuickGELU"
    assert "OpenAI" in embedder.describe()["activation_source"]
    image_diff, text_diff = clip_difference(embedder, images, openai_expected)
    assert image_diff < UNIT_TOLERANCE and text_diff < UNIT_TOLERANCE


@pytest.mark.slow
def test_clip_from_openai_torchscript_release_equals_openai_clip(openai_state_dict, openai_expected, images, tmp_path):
    path = save_torchscript_release(openai_state_dict, tmp_path / "clip-release.pt")  # recognised by format, not name
    embedder = OpenCLIPEmbedder("ViT-B-32", str(path))
    assert embedder.describe()["activation"] == "QuickGELU"
    image_diff, text_diff = clip_difference(embedder, images, openai_expected)
    assert image_diff < UNIT_TOLERANCE and text_diff < UNIT_TOLERANCE


@pytest.mark.slow  # three ViT-B/32 builds
def test_gelu_with_openai_weights_fails_the_parity_and_an_unknown_file_says_how_to_force(
    openai_state_dict, openai_expected, images, tmp_path, caplog
):
    named = tmp_path / "ViT-B-32.pt"
    torch.save(openai_state_dict, named)
    gelu = OpenCLIPEmbedder("ViT-B-32", str(named), quick_gelu=False)
    assert gelu.describe()["activation"] == "GELU"
    assert min(clip_difference(gelu, images, openai_expected)) > 100 * UNIT_TOLERANCE  # what open_clip's default builds

    renamed = tmp_path / "my-clip.pt"
    renamed.write_bytes(named.read_bytes())
    with caplog.at_level(logging.WARNING, logger="metrics.backends.clip"):
        unknown = OpenCLIPEmbedder("ViT-B-32", str(renamed))
    assert unknown.describe()["activation"] == "GELU" and "quick_gelu=True" in caplog.text
    forced = OpenCLIPEmbedder("ViT-B-32", str(renamed), quick_gelu=True)
    assert forced.describe()["activation"] == "QuickGELU"
    assert max(clip_difference(forced, images, openai_expected)) < UNIT_TOLERANCE
    with pytest.raises(ValueError, match="quick_gelu"):
        OpenCLIPEmbedder("ViT-B-32", str(renamed), quick_gelu="yes")


def openai_hub_repo_files(state: dict) -> dict[str, bytes]:
    """What the hub copy of the `openai` tag holds: an open_clip config and the weights as safetensors.

    The config names the architecture without `quick_gelu`, the case where nothing in the copy
    says the weights need QuickGELU.
    """
    import open_clip

    tag = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    config = {
        "model_cfg": open_clip.get_model_config("ViT-B-32"),
        "preprocess_cfg": {key: tag[key] for key in ("mean", "std", "interpolation", "resize_mode")},
    }
    return {"open_clip_config.json": json.dumps(config).encode(), "open_clip_model.safetensors": safetensors_bytes(state)}


def test_clip_from_a_staged_directory_equals_openai_clip(openai_state_dict, openai_expected, images, tmp_path):
    from jobs.staging import stage, use_staged_weights
    from jobs.weight_sources import weights_named_by, with_source_overrides
    from metrics.backends import BackendSpec, MetricBackendsConfig, load_backend

    fetched = tmp_path / "fetched-by-hand"  # `hf download timm/vit_base_patch32_clip_224.openai` on another machine
    fetched.mkdir()
    for name, payload in openai_hub_repo_files(openai_state_dict).items():
        (fetched / name).write_bytes(payload)
    clip_source = [source for source in weights_named_by([{"backends": {}}]) if source.name == "clip"]
    assert clip_source and clip_source[0].source == "ViT-B-32:openai"
    stage(with_source_overrides(clip_source, {"clip": str(fetched)}), tmp_path / "models", progress=False)

    config = use_staged_weights(MetricBackendsConfig(face=None, flow=BackendSpec("opencv")), tmp_path / "models")
    assert config.clip.options["model"].startswith("local-dir:")
    embedder = load_backend("clip", config.clip)
    assert embedder.describe()["activation"] == "QuickGELU"
    image_diff, text_diff = clip_difference(embedder, images, openai_expected)
    assert image_diff < UNIT_TOLERANCE and text_diff < UNIT_TOLERANCE


# --- DINO: the original ViT-S/16 ------------------------------------------------------------------------------


class DinoBlock(nn.Module):
    """Pre-norm transformer block of the original DINO ViT: fused qkv attention, then a GELU MLP."""

    def __init__(self, width: int, heads: int, mlp: int, eps: float):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width, eps=eps), nn.LayerNorm(width, eps=eps)
        self.attn = nn.Module()
        self.attn.qkv, self.attn.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(width, mlp), nn.Linear(mlp, width)

    def attention(self, x):
        batch, tokens, width = x.shape
        q, k, v = self.attn.qkv(x).reshape(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) * (width // self.heads) ** -0.5).softmax(dim=-1)
        return self.attn.proj((weights @ v).transpose(1, 2).reshape(batch, tokens, width))

    def forward(self, x):
        x = x + self.attention(self.norm1(x))
        return x + self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))


class DinoViT(nn.Module):
    """DINO's ViT-S/16 (384 wide, 12 layers, 6 heads, MLP 1536, LayerNorm eps 1e-6); returns the CLS token."""

    def __init__(self, width=384, depth=12, heads=6, mlp=1536, patch=16, image=224, eps=1e-6):
        super().__init__()
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, width, patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.zeros(1, (image // patch) ** 2 + 1, width))
        self.blocks = nn.ModuleList(DinoBlock(width, heads, mlp, eps) for _ in range(depth))
        self.norm = nn.LayerNorm(width, eps=eps)

    def forward(self, pixels):
        x = self.patch_embed.proj(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed  # 224 px: no interpolation
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


def dino_to_transformers(state: dict, depth: int = 12) -> dict:
    """The original DINO checkpoint's keys and fused qkv as transformers' ViTModel names them."""
    out = {
        "embeddings.cls_token": state["cls_token"],
        "embeddings.position_embeddings": state["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "layernorm.weight": state["norm.weight"],
        "layernorm.bias": state["norm.bias"],
    }
    renamed = {
        "norm1": "layernorm_before",
        "norm2": "layernorm_after",
        "attn.proj": "attention.output.dense",
        "mlp.fc1": "intermediate.dense",
        "mlp.fc2": "output.dense",
    }
    for i in range(depth):
        source, target = f"blocks.{i}.", f"encoder.layer.{i}."
        for old, new in renamed.items():
            for kind in ("weight", "bias"):
                out[f"{target}{new}.{kind}"] = state[f"{source}{old}.{kind}"]
        for kind in ("weight", "bias"):
            for name, part in zip(("query", "key", "value"), state[f"{source}attn.qkv.{kind}"].chunk(3)):
                out[f"{target}attention.attention.{name}.{kind}"] = part
    return out


@pytest.fixture(scope="module")
def dino_reference():
    """The original-design ViT-S/16 with random weights, shaped like DINO's own initialisation."""
    generator = torch.Generator().manual_seed(0)
    model = DinoViT().eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name:
                parameter.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn(parameter.shape, generator=generator))
            else:
                parameter.copy_(0.02 * torch.randn(parameter.shape, generator=generator))
    return model


def dino_reference_pixels(image: np.ndarray) -> torch.Tensor:
    """The author's DINO preprocessing: a Pillow bilinear stretch to 224x224, /255, ImageNet mean and std."""
    from PIL import Image

    resized = np.asarray(Image.fromarray(image).resize((224, 224), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    normalised = (resized - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    return torch.from_numpy(normalised).permute(2, 0, 1)


@pytest.fixture(scope="module")
def dino_expected(dino_reference, images):
    with torch.no_grad():
        return unit(dino_reference(torch.stack([dino_reference_pixels(image) for image in images])).numpy())


def dino_hub_files(reference: nn.Module) -> dict[str, bytes]:
    return {
        "config.json": json.dumps(DINO_HUB_CONFIG).encode(),
        "model.safetensors": safetensors_bytes(dino_to_transformers(reference.state_dict())),
    }


def test_dino_from_a_local_directory_equals_the_original_dino_vit(dino_reference, dino_expected, images, tmp_path):
    for name, payload in dino_hub_files(dino_reference).items():
        (tmp_path / name).write_bytes(payload)
    embedder = DINOEmbedder(str(tmp_path))
    assert embedder.describe()["layer_norm_eps"] == 1e-6
    assert {m.eps for m in embedder.model.modules() if isinstance(m, nn.LayerNorm)} == {1e-6}
    assert max_unit_difference(embedder.embed_images(images), dino_expected) < UNIT_TOLERANCE

    # The hub config's epsilon (what the author's evaluation ran, on request) is not the original model's.
    as_configured = DINOEmbedder(str(tmp_path), layer_norm_eps="config")
    assert {m.eps for m in as_configured.model.modules() if isinstance(m, nn.LayerNorm)} == {1e-12}
    assert max_unit_difference(as_configured.embed_images(images), dino_expected) > UNIT_TOLERANCE


def test_dino_pixels_equal_the_authors_image_processor_and_a_centre_crop_would_fail(dino_reference, dino_expected, images, tmp_path):
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    for name, payload in dino_hub_files(dino_reference).items():
        (tmp_path / name).write_bytes(payload)
    embedder = DINOEmbedder(str(tmp_path))
    processor = ViTImageProcessorPil(size={"height": 224, "width": 224}, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))
    for image in images:
        expected = processor(images=image, return_tensors="pt")["pixel_values"]
        np.testing.assert_allclose(embedder.pixel_values([image]).numpy(), expected.numpy(), atol=1e-5)

    # A 256-resize + 224 centre crop (DINO's ImageNet evaluation) is not what the scores used: it must not pass.
    from torchvision import transforms

    crop = transforms.Compose(
        [
            transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    from PIL import Image

    with torch.no_grad():
        cropped = dino_reference(torch.stack([crop(Image.fromarray(image)) for image in images])).numpy()
    assert max_unit_difference(embedder.embed_images(images), cropped) > 100 * UNIT_TOLERANCE


# --- RAFT: DD as VBench computes it ---------------------------------------------------------------------------


class VBenchInputPadder:
    """RAFT's `InputPadder` in the "sintel" mode VBench uses: replicate-pad to multiples of 8, split evenly."""

    def __init__(self, dims):
        height, width = dims[-2:]
        pad_h, pad_w = (((height // 8) + 1) * 8 - height) % 8, (((width // 8) + 1) * 8 - width) % 8
        self.pad_ = [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2]

    def pad(self, *inputs):
        return [F.pad(x, self.pad_, mode="replicate") for x in inputs]


def vbench_pair_scores(raft: nn.Module, frames: np.ndarray) -> list[float]:
    """VBench's dynamic_degree per pair: frames as float [0, 255], padded, RAFT's [-1, 1] mapping, 20
    iterations, the upsampled flow, and the mean of the top 5 % magnitudes over the padded flow."""
    scores = []
    tensors = [torch.from_numpy(frame.astype(np.uint8)).permute(2, 0, 1).float()[None] for frame in frames]
    with torch.no_grad():
        for image1, image2 in zip(tensors[:-1], tensors[1:]):
            image1, image2 = VBenchInputPadder(image1.shape).pad(image1, image2)
            flow_up = raft(2 * (image1 / 255.0) - 1.0, 2 * (image2 / 255.0) - 1.0, num_flow_updates=20)[-1]
            flow = flow_up[0].permute(1, 2, 0).numpy()
            magnitude = np.sqrt(np.square(flow[:, :, 0]) + np.square(flow[:, :, 1]))
            height, width = magnitude.shape
            scores.append(float(np.mean(abs(np.sort(-magnitude.flatten()))[: int(height * width * 0.05)])))
    return scores


@pytest.fixture(scope="module")
def raft_weights(tmp_path_factory):
    from tiny_models import save_tiny_raft

    return save_tiny_raft(tmp_path_factory.mktemp("raft") / "raft_large.pth", seed=3)


@pytest.fixture(scope="module")
def panning_frames():
    """Two 130x141 frames of a photo moving right and down (both sides get padded: to 136x144)."""
    from skimage import data

    photo = data.astronaut()
    return np.stack([np.ascontiguousarray(photo[100 + 3 * i : 230 + 3 * i, 200 + 5 * i : 341 + 5 * i]) for i in range(2)])


@pytest.fixture(scope="module")
def vbench_expected(raft_weights, panning_frames):
    from torchvision.models.optical_flow import raft_large

    raft = raft_large(weights=None)
    raft.load_state_dict(torch.load(raft_weights, weights_only=True))
    return vbench_pair_scores(raft.eval(), panning_frames)


def test_raft_dd_pair_scores_from_a_state_dict_file_equal_vbench(raft_weights, panning_frames, vbench_expected):
    flow = RAFTFlow(str(raft_weights))
    assert flow.describe()["num_flow_updates"] == 20
    flows = flow.consecutive_flows(panning_frames)
    assert flows.shape == (1, 136, 144, 2)
    np.testing.assert_allclose([pair_score(f) for f in flows], vbench_expected, atol=PAIR_SCORE_TOLERANCE, rtol=0)

    # Scoring the flow cut back to the frame (the backend's former output) is not VBench's DD.
    cropped = RAFTFlow(str(raft_weights), crop_to_frame=True).consecutive_flows(panning_frames)
    assert cropped.shape == (1, 130, 141, 2)
    assert max(abs(pair_score(f) - e) for f, e in zip(cropped, vbench_expected)) > 10 * PAIR_SCORE_TOLERANCE


def test_raft_c_t_v1_from_torch_hub_cache_equals_vbench(raft_weights, panning_frames, vbench_expected, tmp_path, monkeypatch):
    from torchvision.models.optical_flow import Raft_Large_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # torch.hub reads it at every call
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / Path(Raft_Large_Weights.C_T_V1.url).name).write_bytes(raft_weights.read_bytes())
    flow = RAFTFlow("C_T_V1")
    np.testing.assert_allclose(
        [pair_score(f) for f in flow.consecutive_flows(panning_frames)], vbench_expected, atol=PAIR_SCORE_TOLERANCE, rtol=0
    )


# --- The published defaults from a user's caches, offline -----------------------------------------------------

OFFLINE_LOAD = textwrap.dedent("""
    import sys
    import numpy as np
    from metrics.backends import MetricBackendsConfig, load_backends
    from metrics.dynamic_degree import pair_score

    inputs = np.load(sys.argv[1], allow_pickle=True)
    backends = load_backends(MetricBackendsConfig(face=None))  # the published defaults, nothing staged
    described = backends.describe()
    np.savez(sys.argv[2], clip_images=backends.clip.embed_images(list(inputs["images"])),
             clip_texts=backends.clip.embed_texts(list(inputs["prompts"])), dino=backends.dino.embed_images(list(inputs["images"])),
             pair_scores=[pair_score(f) for f in backends.flow.consecutive_flows(inputs["frames"])],
             activation=described["clip"]["activation"], dino_eps=described["dino"]["layer_norm_eps"])
""")


@pytest.mark.slow
def test_published_defaults_load_offline_from_a_users_caches_and_equal_the_references(
    openai_state_dict, openai_expected, dino_reference, dino_expected, raft_weights, panning_frames, vbench_expected, images, tmp_path
):
    from torchvision.models.optical_flow import Raft_Large_Weights

    home = tmp_path / "home"
    hub_cache_entry(home / "hf" / "hub", OPENAI_HUB_REPO, {"open_clip_model.safetensors": safetensors_bytes(openai_state_dict)})
    hub_cache_entry(home / "hf" / "hub", DINO_HUB_REPO, dino_hub_files(dino_reference))
    checkpoints = home / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / Path(Raft_Large_Weights.C_T_V1.url).name).write_bytes(raft_weights.read_bytes())
    inputs = tmp_path / "inputs.npz"
    np.savez(inputs, images=np.array(images, dtype=object), prompts=np.array(PROMPTS), frames=panning_frames)

    env = {
        **os.environ,
        "HF_HOME": str(home / "hf"),
        "HF_HUB_OFFLINE": "1",
        "TORCH_HOME": str(home / "torch"),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_LOAD, str(inputs), str(tmp_path / "out.npz")], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    assert str(out["activation"]) == "QuickGELU" and float(out["dino_eps"]) == 1e-6
    assert max_unit_difference(out["clip_images"], openai_expected[0]) < UNIT_TOLERANCE
    assert max_unit_difference(out["clip_texts"], openai_expected[1]) < UNIT_TOLERANCE
    assert max_unit_difference(out["dino"], dino_expected) < UNIT_TOLERANCE
    np.testing.assert_allclose(out["pair_scores"], vbench_expected, atol=PAIR_SCORE_TOLERANCE, rtol=0)
