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


# Qwen2-VL's special tokens in the order of its vocabulary (151643 onwards in the real one).
QWEN2_VL_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
GME_TOKENIZER_CORPUS = (
    "You are a helpful assistant.",
    "Find an image that matches the given text.",
    "A man walks his dog in the park while a woman rides a red bicycle past them.",
    "The cat sleeps on the sofa next to a cup of tea.",
)
GME_INIT_STD = 0.2  # wider than transformers' 0.02, so different inputs end in clearly different embeddings


def save_random_gme(directory: str | Path, seed: int = 0) -> str:
    """A tiny random Qwen2-VL in the files of GME's hub repo (`Alibaba-NLP/gme-Qwen2-VL-7B-Instruct`).

    The vision tower has 1 block of width 32 (patch 14, 2x2 merge, as the real one) and the language
    model 2 layers of width 32 with M-RoPE sections; the tokenizer is a byte-level BPE trained here with
    the `tokenizers` library (Qwen2's pre-tokenizer, a few hundred tokens) plus Qwen2-VL's special tokens;
    `preprocessor_config.json` is Qwen2-VL's (CLIP mean and std, the slow processor's type name).

    Returns:
        The directory, for `GmeScorer(model=...)`.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(BPE(unk_token=None, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(GME_TOKENIZER_CORPUS, trainer)
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in QWEN2_VL_SPECIAL_TOKENS])
    tokenizer.save(str(directory / "tokenizer.json"))
    ids = {token: tokenizer.token_to_id(token) for token in QWEN2_VL_SPECIAL_TOKENS}
    tokenizer_config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "additional_special_tokens": list(QWEN2_VL_SPECIAL_TOKENS[1:]),
        "model_max_length": 32768,
        "split_special_tokens": False,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    preprocessor_config = {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2VLProcessor",
        "min_pixels": 3136,
        "max_pixels": 12845056,
        "patch_size": 14,
        "temporal_patch_size": 2,
        "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor_config, indent=2))
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": tokenizer.get_vocab_size(),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 4096,
            "rope_scaling": {"type": "mrope", "mrope_section": [4, 2, 2]},  # head dim 16: 8 frequencies, t/h/w
            "rope_theta": 10000.0,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "initializer_range": GME_INIT_STD,
        },
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "initializer_range": GME_INIT_STD,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    with torch.no_grad():  # norms away from 1, so a test can tell the final norm's output from its input
        for name, parameter in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                parameter.uniform_(0.5, 1.5)
    model.save_pretrained(directory)
    return str(directory)
