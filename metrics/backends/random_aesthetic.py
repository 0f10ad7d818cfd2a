"""A random-initialised aesthetic predictor saved where `LAIONAestheticScorer` reads it, for offline tests and smoke runs.

Its scores mean nothing: the files only exercise the real loaders (open_clip's `local-dir:` and the
MLP's `.pth` state dict) and the scoring path.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from metrics.backends.aesthetic import build_aesthetic_predictor

EMBED_DIM = 768  # the MLP's input width, CLIP ViT-L/14's embedding size
WEIGHT_GAIN = 4.0


def save_random_aesthetic(directory: str | Path, seed: int = 0) -> dict:
    """A tiny open_clip model (1 layer, width 32, 768-dim embeddings, QuickGELU) and a random MLP in LAION's layout.

    Returns:
        `LAIONAestheticScorer` options reading them: `weights` (the `.pth`) and `clip_model` (`local-dir:`).
    """
    import open_clip

    directory = Path(directory)
    clip_dir = directory / "clip"
    clip_dir.mkdir(parents=True, exist_ok=True)
    model_cfg = {
        "embed_dim": EMBED_DIM,
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
    (clip_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}))
    torch.manual_seed(seed)
    torch.save(open_clip.model.CLIP(**model_cfg).state_dict(), clip_dir / "open_clip_pytorch_model.bin")
    predictor = build_aesthetic_predictor(EMBED_DIM)
    with torch.no_grad():
        # The layers are linear and default init shrinks ~1/sqrt(3) per layer, so every image would score
        # alike; scaled up, images of a tiny CLIP land tenths of a point apart, so a row mix-up shows.
        for layer in predictor.layers:
            if isinstance(layer, torch.nn.Linear):
                layer.weight.mul_(WEIGHT_GAIN)
        predictor.layers[-1].bias.fill_(5.0)
    weights = directory / "aesthetic-model.pth"
    torch.save(predictor.state_dict(), weights)
    return {"weights": str(weights), "clip_model": f"local-dir:{clip_dir}"}
