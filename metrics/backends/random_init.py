"""Random-initialised CLIP, DINO and the aesthetic MLP saved where the real loaders read them, for offline smoke runs.

The demo and the tests run the real loading and scoring paths on machines without the published
weights. Scores made with these models mean nothing: they only show that the plumbing works.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from metrics.backends import BackendSpec, MetricBackendsConfig


def save_random_open_clip(model_dir: str | Path, seed: int = 0, *, embed_dim: int = 32) -> str:
    """An open_clip `local-dir:` model (ViT, 1 layer, width 32) with CLIP's real BPE tokenizer.

    It says `quick_gelu` in its config, as the published (OpenAI) CLIP needs, so offline runs
    build the same activation. `embed_dim` 768 stands in for ViT-L/14 (the aesthetic MLP's input).
    """
    import open_clip

    model_cfg = {
        "embed_dim": embed_dim,
        "quick_gelu": True,
        "vision_cfg": {"image_size": 224, "layers": 1, "width": 32, "patch_size": 32, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    preprocess_cfg = {
        "mean": list(open_clip.OPENAI_DATASET_MEAN),
        "std": list(open_clip.OPENAI_DATASET_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}))
    torch.manual_seed(seed)
    torch.save(open_clip.model.CLIP(**model_cfg).state_dict(), model_dir / "open_clip_pytorch_model.bin")
    return f"local-dir:{model_dir}"


def save_random_dino(model_dir: str | Path, seed: int = 0) -> Path:
    """A transformers ViT shaped like dino-vits16 (patch 16, 224 px) but 1 layer of width 32.

    Its LayerNorm epsilon is the original DINO's (1e-6), the one `DINOEmbedder` builds by default.
    """
    from transformers import ViTConfig, ViTModel

    from metrics.backends.dino import DINO_LAYER_NORM_EPS

    torch.manual_seed(seed)
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=224,
        patch_size=16,
        layer_norm_eps=DINO_LAYER_NORM_EPS,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(model_dir)
    return Path(model_dir)


def save_random_metric_models(directory: str | Path, seed: int = 0) -> MetricBackendsConfig:
    """Random CLIP and DINO under `directory`, OpenCV flow, no Face Sim: a backends config needing no downloads."""
    directory = Path(directory)
    return MetricBackendsConfig(
        clip=BackendSpec("open_clip", {"model": save_random_open_clip(directory / "clip", seed)}),
        dino=BackendSpec("transformers-dino", {"model": str(save_random_dino(directory / "dino", seed))}),
        face=None,
        flow=BackendSpec("opencv", {}),
    )


AESTHETIC_EMBED_DIM = 768  # the MLP's input width, CLIP ViT-L/14's embedding size
AESTHETIC_WEIGHT_GAIN = 4.0


def save_random_aesthetic(directory: str | Path, seed: int = 0) -> dict:
    """A tiny open_clip model with 768-dim embeddings and a random MLP in LAION's layout.

    Returns:
        `LAIONAestheticScorer` options reading them: `weights` (the `.pth`) and `clip_model` (`local-dir:`).
    """
    from metrics.backends.aesthetic import build_aesthetic_predictor

    directory = Path(directory)
    clip_model = save_random_open_clip(directory / "clip", seed, embed_dim=AESTHETIC_EMBED_DIM)
    predictor = build_aesthetic_predictor(AESTHETIC_EMBED_DIM)
    with torch.no_grad():
        # The layers are linear and default init shrinks ~1/sqrt(3) per layer, so every image would score
        # alike; scaled up, images of a tiny CLIP land tenths of a point apart, so a row mix-up shows.
        for layer in predictor.layers:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(AESTHETIC_WEIGHT_GAIN)
        predictor.layers[-1].bias.fill_(5.0)
    weights = directory / "aesthetic-model.pth"
    torch.save(predictor.state_dict(), weights)
    return {"weights": str(weights), "clip_model": clip_model}
