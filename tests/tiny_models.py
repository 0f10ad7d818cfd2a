"""Tiny seeded stand-ins for the SHP model weights, saved in the real formats the loaders read.

They exercise the real loading and inference paths (insightface's ONNX router and SCRFD decoding,
transformers' Auto* loaders and Grounding DINO post-processing, segment-anything's predictor)
on a CPU in seconds; their outputs mean nothing except where documented.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import torch

SCRFD_STRIDES = (8, 16, 32)
SCRFD_ANCHORS = 2


def _per_anchor(t: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) -> (h * w * anchors, C): SCRFD's output row order (cell-major, then anchor)."""
    channels = t.shape[1]
    return t.permute(0, 2, 3, 1).unsqueeze(3).expand(-1, -1, -1, SCRFD_ANCHORS, -1).reshape(-1, channels)


class _BrightCellSCRFD(torch.nn.Module):
    """SCRFD's 9-output layout (scores, boxes, keypoints per stride) with a known answer.

    An anchor scores ~1 where its stride cell of the input is white and ~0 where it is black, and
    its box is exactly its cell (distances 0, 0, 1, 1 strides from the anchor point, its top-left).
    """

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        scores, boxes, points = [], [], []
        for stride in SCRFD_STRIDES:
            cell = torch.nn.functional.avg_pool2d(x, stride, stride).mean(1, keepdim=True)  # (1, 1, h, w), ~[-1, 1]
            scores.append(_per_anchor(torch.sigmoid(12.0 * (cell - 0.5))))
            boxes.append(_per_anchor(cell * 0 + torch.tensor([0.0, 0.0, 1.0, 1.0]).view(1, 4, 1, 1)))
            points.append(_per_anchor((cell * 0).expand(-1, 10, -1, -1)))
        return (*scores, *boxes, *points)


def save_tiny_scrfd(model_dir: Path) -> Path:
    """Write `det_10g.onnx` (dynamic height/width input like buffalo_l's) into `model_dir`."""
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / "det_10g.onnx"
    outputs = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in SCRFD_STRIDES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated; onnxscript is not installed
        torch.onnx.export(
            _BrightCellSCRFD(),
            (torch.zeros(1, 3, 64, 64),),
            str(path),
            dynamo=False,
            input_names=["input.1"],
            output_names=outputs,
            dynamic_axes={"input.1": {2: "height", 3: "width"}, **{name: {0: "anchors"} for name in outputs}},
        )
    return path


GROUNDING_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "cat", "dog", "person"]
GROUNDING_QUERIES = 5


def save_tiny_grounding_dino(model_dir: Path, seed: int = 0) -> Path:
    """A random Grounding DINO (Swin + BERT, 32-dim) with an offline WordPiece tokenizer and its processor."""
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
        SwinConfig,
    )

    backbone = SwinConfig(image_size=128, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=7, out_indices=[2, 3, 4])
    text = {
        "model_type": "bert",
        "vocab_size": len(GROUNDING_VOCAB),
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 8,
        "max_position_embeddings": 32,
    }
    config = GroundingDinoConfig(
        backbone_config=backbone,
        use_timm_backbone=False,
        text_config=text,
        max_text_len=16,
        d_model=32,  # GroupNorm(32, d_model) in the input projections
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        encoder_n_points=2,
        decoder_n_points=2,
        num_feature_levels=4,
        num_queries=GROUNDING_QUERIES,
    )
    torch.manual_seed(seed)
    model = GroundingDinoForObjectDetection(config).eval()
    tokenizer = BertTokenizer(vocab={token: i for i, token in enumerate(GROUNDING_VOCAB)})
    # 128 px keeps the 4th (stride-64) feature map at 2x2, which its GroupNorm needs.
    images = GroundingDinoImageProcessor(size={"shortest_edge": 128, "longest_edge": 128})
    model.save_pretrained(model_dir)
    GroundingDinoProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(model_dir)
    return model_dir


SAM_IMAGE_SIZE = 64


def build_tiny_sam(checkpoint: str | None = None) -> torch.nn.Module:
    """A 64-px, 16-dim SAM with the real components; signature of `sam_model_registry` builders."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    assert checkpoint is None, "the backend loads weights itself (weights_only=True)"
    dim, patch = 16, 16
    grid = SAM_IMAGE_SIZE // patch
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=SAM_IMAGE_SIZE,
            patch_size=patch,
            embed_dim=32,
            depth=2,
            num_heads=2,
            out_chans=dim,
            use_rel_pos=True,
            window_size=2,
            global_attn_indexes=(1,),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=dim,
            image_embedding_size=(grid, grid),
            input_image_size=(SAM_IMAGE_SIZE, SAM_IMAGE_SIZE),
            mask_in_chans=4,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=dim,
            transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=32, num_heads=2),
            num_multimask_outputs=3,
            iou_head_depth=2,
            iou_head_hidden_dim=16,
        ),
    ).eval()


def save_tiny_sam(path: Path, seed: int = 0) -> Path:
    """Seeded `build_tiny_sam()` weights as a plain state dict, like the released SAM checkpoints."""
    torch.manual_seed(seed)
    torch.save(build_tiny_sam().state_dict(), path)
    return path


# --- metric backends -------------------------------------------------------------------------

# ArcFace's 112x112 alignment template, as fractions of the face box: eyes, nose, mouth corners.
ARCFACE_TEMPLATE = torch.tensor([[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]]) / 112.0


class _BrightCellSCRFDWithKeypoints(_BrightCellSCRFD):
    """`_BrightCellSCRFD` whose five keypoints sit on ArcFace's template inside each cell."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outputs = list(super().forward(x))
        for i, stride in enumerate(SCRFD_STRIDES):
            cell = torch.nn.functional.avg_pool2d(x, stride, stride).mean(1, keepdim=True)
            template = ARCFACE_TEMPLATE.reshape(1, 10, 1, 1)
            outputs[6 + i] = _per_anchor(cell * 0 + template)
        return tuple(outputs)


class _TinyArcFace(torch.nn.Module):
    """112x112 aligned face -> 512-dim embedding (as buffalo_l's ArcFace), a seeded random conv net."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 8, stride=8)
        self.fc = torch.nn.Linear(8 * 14 * 14, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _export(module: torch.nn.Module, example: torch.Tensor, path: Path, outputs: list[str], dynamic: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(path), dynamo=False, input_names=["input.1"], output_names=outputs, dynamic_axes=dynamic)


def save_tiny_face_pack(model_dir: Path, seed: int = 0) -> Path:
    """A `buffalo_l`-shaped pack: det_10g.onnx (bright cells are faces) and w600k_r50.onnx."""
    model_dir.mkdir(parents=True, exist_ok=True)
    outputs = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in SCRFD_STRIDES]
    _export(
        _BrightCellSCRFDWithKeypoints(),
        torch.zeros(1, 3, 64, 64),
        model_dir / "det_10g.onnx",
        outputs,
        {"input.1": {2: "height", 3: "width"}, **{name: {0: "anchors"} for name in outputs}},
    )
    torch.manual_seed(seed)
    _export(
        _TinyArcFace().eval(),
        torch.zeros(1, 3, 112, 112),
        model_dir / "w600k_r50.onnx",
        ["fc1"],
        {"input.1": {0: "batch"}, "fc1": {0: "batch"}},
    )
    return model_dir


def save_tiny_raft(path: Path, seed: int = 0) -> Path:
    """A random `raft_large` state dict, the format a staged C_T_V1 checkpoint has."""
    from torchvision.models.optical_flow import raft_large

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(raft_large(weights=None).state_dict(), path)
    return path


# --- IP-Adapter baselines --------------------------------------------------------------------

# Laid out like the hub repositories (h94/IP-Adapter: models/, h94/IP-Adapter-FaceID: root), so the
# baselines' default `subfolder` and `image_encoder_folder` are exercised; only the file names differ.
TINY_IP_ADAPTER_WEIGHT_NAMES = {
    "ip-adapter": "ip-adapter_tiny.safetensors",
    "ip-adapter-plus": "ip-adapter-plus_tiny.safetensors",
    "ip-adapter-faceid": "ip-adapter-faceid_tiny.bin",
}
TINY_FACEID_PORTRAIT_WEIGHT_NAME = "ip-adapter-faceid-portrait_tiny.bin"
TINY_FACEID_LORA_WEIGHT_NAME = "ip-adapter-faceid_tiny_lora.safetensors"
TINY_IP_ADAPTER_TOKENS = 4  # image tokens of plain IP-Adapter and FaceID (fixed by diffusers' converter)
TINY_FACEID_PORTRAIT_TOKENS = 16  # tokens per face of ip-adapter-faceid-portrait
TINY_IP_ADAPTER_PLUS_QUERIES = 16  # the Resampler's latents, as in ip-adapter-plus_sd15
TINY_FACEID_LORA_RANK = 4  # the released FaceID LoRA has rank 128


def _tiny_clip_vision(directory: Path, seed: int):
    """A random 2-layer, 32-px CLIP vision tower with projection, saved where `load_ip_adapter` reads it."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8, projection_dim=16
    )
    torch.manual_seed(seed)
    model = CLIPVisionModelWithProjection(config)
    model.save_pretrained(directory)
    return config


def sd15_attention_layers(preset: str = "tiny") -> list[tuple[str, int, int]]:
    """(module name, hidden, cross dim or hidden) of every attention of the preset's SD1.5-style UNet.

    Numbered like the original IP-Adapter code numbers its checkpoint keys: the position in a plain
    `UNet2DConditionModel`'s `attn_processors` (attn1 and attn2 of each transformer block in turn),
    so no motion module can be counted.
    """
    from diffusers import UNet2DConditionModel

    from videomaker.presets import load_preset

    with torch.device("meta"):
        unet = UNet2DConditionModel(**load_preset(preset).architecture["unet"])
    layers = []
    for name in unet.attn_processors:
        attn = unet.get_submodule(name.removesuffix(".processor"))
        layers.append((name.removesuffix(".processor"), attn.to_q.in_features, attn.to_k.in_features))
    return layers


def _resampler_state(embed_dims: int, hidden_dims: int, output_dims: int, rand: Callable[..., torch.Tensor]) -> dict:
    """IP-Adapter-Plus's original Resampler keys (4 layers, 1 head of 64, FF ratio 4)."""
    inner, ff = 64, 4 * hidden_dims
    state = {
        "latents": rand(1, TINY_IP_ADAPTER_PLUS_QUERIES, hidden_dims),
        "proj_in.weight": rand(hidden_dims, embed_dims),
        "proj_in.bias": rand(hidden_dims),
        "proj_out.weight": rand(output_dims, hidden_dims),
        "proj_out.bias": rand(output_dims),
        "norm_out.weight": 1 + rand(output_dims),
        "norm_out.bias": rand(output_dims),
    }
    for i in range(4):
        state |= {
            f"layers.{i}.0.norm1.weight": 1 + rand(hidden_dims),
            f"layers.{i}.0.norm1.bias": rand(hidden_dims),
            f"layers.{i}.0.norm2.weight": 1 + rand(hidden_dims),
            f"layers.{i}.0.norm2.bias": rand(hidden_dims),
            f"layers.{i}.0.to_q.weight": rand(inner, hidden_dims),
            f"layers.{i}.0.to_kv.weight": rand(2 * inner, hidden_dims),
            f"layers.{i}.0.to_out.weight": rand(hidden_dims, inner),
            f"layers.{i}.1.0.weight": 1 + rand(hidden_dims),
            f"layers.{i}.1.0.bias": rand(hidden_dims),
            f"layers.{i}.1.1.weight": rand(ff, hidden_dims),
            f"layers.{i}.1.3.weight": rand(hidden_dims, ff),
        }
    return state


def faceid_lora_state(preset: str = "tiny", seed: int = 1, rank: int = TINY_FACEID_LORA_RANK) -> dict[str, torch.Tensor]:
    """A random FaceID LoRA in the released `ip_adapter` naming: `N.to_{q,k,v,out}_lora.{down,up}.weight`.

    IP-Adapter's LoRALinearLayer: `down` (rank, in), `up` (out, rank), no alpha (scale 1).
    """
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for n, (_, hidden, context) in enumerate(sd15_attention_layers(preset)):
        for projection, fan_in in (("to_q", hidden), ("to_k", context), ("to_v", context), ("to_out", hidden)):
            state[f"{n}.{projection}_lora.down.weight"] = torch.randn(rank, fan_in, generator=generator) * fan_in**-0.5
            state[f"{n}.{projection}_lora.up.weight"] = torch.randn(hidden, rank, generator=generator) * rank**-0.5
    return state


def faceid_lora_as_kohya(lora: dict[str, torch.Tensor], preset: str = "tiny") -> dict[str, torch.Tensor]:
    """The same LoRA in the kohya naming of `ip-adapter-faceid_sd15_lora.safetensors`.

    `lora_unet_<module path with _>_<to_q|to_k|to_v|to_out_0>.lora_<down|up>.weight`, no alpha keys.
    """
    names = [name for name, _, _ in sd15_attention_layers(preset)]
    kohya = {}
    for key, tensor in lora.items():
        index, rest = key.split(".", 1)
        projection, side = rest.split("_lora.")[0], rest.split("_lora.")[1].split(".")[0]
        target = "to_out_0" if projection == "to_out" else projection
        kohya[f"lora_unet_{names[int(index)].replace('.', '_')}_{target}.lora_{side}.weight"] = tensor.contiguous()
    return kohya


def save_tiny_ip_adapter(directory: Path, variant: str, preset: str = "tiny", seed: int = 0, *, portrait: bool = False) -> Path:
    """Random IP-Adapter weights for `preset`'s UNet in the original checkpoint format, laid out like the hub.

    Image variants: `models/<weight name>` (safetensors, `image_proj.*` + `ip_adapter.*`) and a tiny
    CLIP vision tower in `models/image_encoder`. FaceID: at the root, torch files
    `{"image_proj": ..., "ip_adapter": ...}` projecting 512-d face embeddings, as released:
    `TINY_IP_ADAPTER_WEIGHT_NAMES["ip-adapter-faceid"]` (4 tokens, with its LoRA in `ip_adapter`, see
    `faceid_lora_state`) plus the same LoRA in kohya format (`TINY_FACEID_LORA_WEIGHT_NAME`); with
    `portrait`, `TINY_FACEID_PORTRAIT_WEIGHT_NAME` too (16 tokens per face, no LoRA).
    """
    from safetensors.torch import save_file

    if variant not in TINY_IP_ADAPTER_WEIGHT_NAMES:
        raise ValueError(f"`variant` must be one of {list(TINY_IP_ADAPTER_WEIGHT_NAMES)}, got {variant!r}.")
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * shape[-1] ** -0.5

    layers = sd15_attention_layers(preset)
    cross_dim = next(context for name, _, context in layers if name.endswith("attn2"))
    ip_adapter = {}
    for n, (name, hidden, context) in enumerate(layers):
        if name.endswith("attn2"):  # cross-attention: IP-Adapter's keys sit at the odd positions
            ip_adapter[f"{n}.to_k_ip.weight"] = rand(hidden, context)
            ip_adapter[f"{n}.to_v_ip.weight"] = rand(hidden, context)

    if variant == "ip-adapter-faceid":
        id_dim = 512

        def faceid_proj(tokens: int) -> dict[str, torch.Tensor]:
            return {
                "proj.0.weight": rand(2 * id_dim, id_dim),
                "proj.0.bias": rand(2 * id_dim),
                "proj.2.weight": rand(cross_dim * tokens, 2 * id_dim),
                "proj.2.bias": rand(cross_dim * tokens),
                "norm.weight": 1 + rand(cross_dim),
                "norm.bias": rand(cross_dim),
            }

        directory.mkdir(parents=True, exist_ok=True)
        lora = faceid_lora_state(preset, seed + 1)
        torch.save(
            {"image_proj": faceid_proj(TINY_IP_ADAPTER_TOKENS), "ip_adapter": ip_adapter | lora},
            directory / TINY_IP_ADAPTER_WEIGHT_NAMES[variant],
        )
        save_file(faceid_lora_as_kohya(lora, preset), directory / TINY_FACEID_LORA_WEIGHT_NAME)
        if portrait:
            portrait_ip = {key: rand(*value.shape) for key, value in ip_adapter.items()}
            torch.save(
                {"image_proj": faceid_proj(TINY_FACEID_PORTRAIT_TOKENS), "ip_adapter": portrait_ip},
                directory / TINY_FACEID_PORTRAIT_WEIGHT_NAME,
            )
        return directory

    vision = _tiny_clip_vision(directory / "models" / "image_encoder", seed)
    if variant == "ip-adapter":
        image_proj = {
            "proj.weight": rand(cross_dim * TINY_IP_ADAPTER_TOKENS, vision.projection_dim),
            "proj.bias": rand(cross_dim * TINY_IP_ADAPTER_TOKENS),
            "norm.weight": 1 + rand(cross_dim),
            "norm.bias": rand(cross_dim),
        }
    else:  # Plus reads the penultimate hidden states, so its input is the tower's width
        image_proj = _resampler_state(vision.hidden_size, cross_dim, cross_dim, rand)
    tensors = {f"image_proj.{k}": v.contiguous() for k, v in image_proj.items()}
    tensors |= {f"ip_adapter.{k}": v.contiguous() for k, v in ip_adapter.items()}
    save_file(tensors, directory / "models" / TINY_IP_ADAPTER_WEIGHT_NAMES[variant])
    return directory


def save_tiny_motion_adapter(directory: Path, preset: str = "tiny", *, mid_block: bool = True, seed: int = 7) -> Path:
    """A random `MotionAdapter` for `preset` saved like a hub motion adapter (`config.json` + weights).

    `mid_block=True` gives it a mid-block motion module, as `animatediff-motion-adapter-v1-5-2` has
    (v1-5-3, the paper preset's, has none).
    """
    from diffusers import MotionAdapter

    from videomaker.presets import load_preset

    config = dict(load_preset(preset).architecture["motion_adapter"], use_motion_mid_block=mid_block)
    torch.manual_seed(seed)
    MotionAdapter(**config).save_pretrained(directory)
    return directory
