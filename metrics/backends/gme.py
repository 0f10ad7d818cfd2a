"""GME (a Qwen2-VL embedding model) as OpenS2V-Eval's GmeScore runs it: the text-video relevance of a prompt.

GME (`Alibaba-NLP/gme-Qwen2-VL-7B-Instruct`, its `gme_inference.py`, which OpenS2V copies as
`eval/utils/gme/gme_model.py`) embeds a text or an image as one chat turn:

    <|im_start|>system\\n{instruction}<|im_end|>\\n<|im_start|>user\\n{content}<|im_end|>\\n<|im_start|>assistant\\n<|endoftext|>

with `content` the text, or `<|vision_start|><|image_pad|><|vision_end|>` for an image (the processor
expands the pad to one token per 2x2 merge of 14-pixel patches). A text query takes the caller's
instruction; an image embedded as a corpus item (`is_query=False`, as OpenS2V does) always takes the
default "You are a helpful assistant.". The embedding is the final (normed) hidden state of the last
real token (the trailing `<|endoftext|>`), L2-normalised. GME runs the language model on the merged
embeddings with no position ids, so every token, image patches included, has the sequential position
of a text token (not Qwen2-VL's 3-D M-RoPE positions); this backend does the same.

Images are first resized as GME's `fetch_image` does (each side rounded to a multiple of 28, bicubic),
then by the Qwen2-VL image processor to between `min_image_tokens` and `max_image_tokens` tokens (28 x 28
pixels each; bicubic). OpenS2V ran transformers 4.51, whose Qwen2-VL image processor resized with
Pillow; here the processor's Pillow backend is used for the same reason.

GmeScore (OpenS2V's `eval/get_gmescore.py`): 32 frames at `np.linspace(0, F - 1, 32, dtype=int)`
(repeats kept), the prompt as a query with the instruction "Find an image that matches the given
text.", per frame the dot product of the two unit embeddings, and their mean over the 32 samples.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from metrics.backends.base import check_images, file_digest
from metrics.backends.registry import WeightSource, option_or_default, weight_at
from metrics.video_quality import opens2v_frame_indices

GME_MODEL = "Alibaba-NLP/gme-Qwen2-VL-7B-Instruct"
GME_MIN_IMAGE_TOKENS = 256  # GmeQwen2VL's defaults, which OpenS2V keeps
GME_MAX_IMAGE_TOKENS = 1280
GME_MAX_LENGTH = 1800  # tokens a text keeps (GmeQwen2VL's max_length; longer ones are truncated)
PIXELS_PER_TOKEN = 28 * 28  # one token: a 2x2 merge of 14-pixel patches
GME_DEFAULT_INSTRUCTION = "You are a helpful assistant."  # the system turn of every corpus (is_query=False) item
OPENS2V_GME_INSTRUCTION = "Find an image that matches the given text."
OPENS2V_GME_FRAMES = 32  # get_gmescore.py's --num_frames default
IMAGE_CONTENT = "<|vision_start|><|image_pad|><|vision_end|>"
# fetch_image's own resize (qwen_vl_utils' bounds): sides to multiples of 28, pixels within [4, 16384] tokens.
FETCH_FACTOR = 28
FETCH_MIN_PIXELS = 4 * PIXELS_PER_TOKEN
FETCH_MAX_PIXELS = 16384 * PIXELS_PER_TOKEN
FETCH_MAX_RATIO = 200
DTYPES = ("auto", "float32", "bfloat16", "float16")
# What staging fetches of the hub repo: configs, tokenizer and weights (not its example images or code).
GME_HUB_FILES = ("*.json", "*.safetensors", "*.txt", "*.jinja")


def gme_chat_text(content: str, instruction: str) -> str:
    """GME's one-turn chat text around `content` (a text, or `IMAGE_CONTENT` for an image)."""
    return f"<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n<|endoftext|>"


def fetch_image_size(height: int, width: int) -> tuple[int, int]:
    """The (height, width) GME's `fetch_image` resizes an image to before the processor sees it.

    qwen_vl_utils' `smart_resize` with its wide bounds: each side rounded to a multiple of 28 (Python's
    round), scaled down or up only outside [4, 16384] tokens, the long side capped at 200 times the short.
    """
    h_bar = max(FETCH_FACTOR, round(height / FETCH_FACTOR) * FETCH_FACTOR)
    w_bar = max(FETCH_FACTOR, round(width / FETCH_FACTOR) * FETCH_FACTOR)
    if h_bar * w_bar > FETCH_MAX_PIXELS:
        beta = math.sqrt((height * width) / FETCH_MAX_PIXELS)
        h_bar = math.floor(height / beta / FETCH_FACTOR) * FETCH_FACTOR
        w_bar = math.floor(width / beta / FETCH_FACTOR) * FETCH_FACTOR
    elif h_bar * w_bar < FETCH_MIN_PIXELS:
        beta = math.sqrt(FETCH_MIN_PIXELS / (height * width))
        h_bar = math.ceil(height * beta / FETCH_FACTOR) * FETCH_FACTOR
        w_bar = math.ceil(width * beta / FETCH_FACTOR) * FETCH_FACTOR
    if max(h_bar, w_bar) / min(h_bar, w_bar) > FETCH_MAX_RATIO:
        if h_bar > w_bar:
            h_bar = w_bar * FETCH_MAX_RATIO
        else:
            w_bar = h_bar * FETCH_MAX_RATIO
    return h_bar, w_bar


def resolve_model_dir(model: str) -> Path:
    """The directory `model` names: a local directory, or a hub repo id's snapshot in the Hugging Face cache.

    Never downloads: a hub id missing from the cache is refused with the command that fetches it.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"`model` {model!r} is a directory without config.json; it must hold GME's files ({GME_MODEL}: "
                f"config.json, *.safetensors, tokenizer and preprocessor configs), e.g. from `hf download {GME_MODEL}`."
            )
        return path
    if path.exists() or not re.fullmatch(r"[\w-][\w.-]*/[\w.-]+", model) or model.startswith((".", "~")):
        raise FileNotFoundError(
            f"`model` {model!r}: no such directory; pass a directory holding GME's files or a hub id in the Hugging Face cache "
            f"(fetch it with `hf download {GME_MODEL}`)."
        )
    import huggingface_hub.constants as hub_constants
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "config.json")
    if not isinstance(cached, str):
        raise FileNotFoundError(
            f"`model` {model!r} is not in the Hugging Face cache ({hub_constants.HF_HUB_CACHE}) and GmeScorer does not download; "
            f"fetch it with `hf download {model}` (or stage it: `videomaker models stage DIR`, then `--models-dir DIR`), "
            f"or pass the directory that holds it."
        )
    return Path(cached).parent


@dataclass(frozen=True)
class GmeVideoScore:
    """A video's GmeScore, the score of each distinct sampled frame (in the order of `sorted(set(indices))`)
    and the sampled frame indices, repeats kept."""

    score: float
    frame_scores: tuple[float, ...]
    indices: tuple[int, ...]


class GmeScorer:
    """GME text and image embeddings and OpenS2V's GmeScore of a video against its prompt.

    Args:
        model (str, default "Alibaba-NLP/gme-Qwen2-VL-7B-Instruct"): Hub repo id (read from the
            Hugging Face cache, never downloaded) or local directory of a Qwen2-VL checkpoint in
            transformers' format with its tokenizer and preprocessor config.
        num_frames (int, default 32): Frames `score_video` samples (OpenS2V: 32, evenly spaced, repeats kept).
        min_image_tokens (int, default 256): Fewest tokens an image is resized to (GME's default;
            `min_pixels` = tokens x 28 x 28).
        max_image_tokens (int, default 1280): Most tokens an image is resized to (GME's default).
        instruction (str, default "Find an image that matches the given text."): System turn of the
            prompt's query embedding (OpenS2V's); images always take GME's default instruction.
        device (str, default "cpu"): Torch device.
        dtype ("auto", "float32", "bfloat16" or "float16", default "auto"): Weights and activations;
            "auto" is float16 on CUDA (what OpenS2V's GmeQwen2VL loads) and float32 elsewhere.
        batch_size (int, default 32): Texts or images per forward (GME's default).

    Loading reads the safetensors twice: once into the model and once for `describe()`'s digest
    (about 16 GB for the 7B model).

    Example:
        >>> gme = GmeScorer()  # Alibaba-NLP/gme-Qwen2-VL-7B-Instruct from the hub cache
        >>> gme.score_video(frames, "A man walks his dog in the park.").score
        0.41
    """

    name = "gme-qwen2-vl"

    @classmethod
    def weights(cls, options: dict) -> list[WeightSource]:
        """The hub repo or folder `model` names (its configs, tokenizer and safetensors)."""
        return [weight_at("gme", str(option_or_default(cls, options, "model")), hub=True, patterns=GME_HUB_FILES)]

    def __init__(
        self,
        model: str = GME_MODEL,
        *,
        num_frames: int = OPENS2V_GME_FRAMES,
        min_image_tokens: int = GME_MIN_IMAGE_TOKENS,
        max_image_tokens: int = GME_MAX_IMAGE_TOKENS,
        instruction: str = OPENS2V_GME_INSTRUCTION,
        device: str = "cpu",
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
        batch_size: int = 32,
    ) -> None:
        import torch
        import transformers
        from transformers import AutoImageProcessor, AutoProcessor, Qwen2VLForConditionalGeneration

        counts = {
            "num_frames": num_frames,
            "batch_size": batch_size,
            "min_image_tokens": min_image_tokens,
            "max_image_tokens": max_image_tokens,
        }
        for option, value in counts.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{option}` must be an integer >= 1, got {value!r}.")
        if min_image_tokens > max_image_tokens:
            raise ValueError(f"`min_image_tokens` ({min_image_tokens}) must not exceed `max_image_tokens` ({max_image_tokens}).")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"`instruction` must be a non-empty string, got {instruction!r}.")
        if dtype not in DTYPES:
            raise ValueError(f"`dtype` must be one of {list(DTYPES)}, got {dtype!r}.")
        self.device = torch.device(device)
        resolved = ("float16" if self.device.type == "cuda" else "float32") if dtype == "auto" else dtype
        directory = resolve_model_dir(model)
        safetensors = sorted(directory.glob("*.safetensors"))
        if not safetensors:
            raise FileNotFoundError(
                f"`model` {model!r}: no *.safetensors in {str(directory)!r}; fetch GME's weights with `hf download {GME_MODEL}`."
            )
        model_type = json.loads((directory / "config.json").read_text()).get("model_type")
        if model_type != "qwen2_vl":
            raise ValueError(f"`model` {model!r} is a {model_type!r} checkpoint, not Qwen2-VL (GME is {GME_MODEL}: model_type 'qwen2_vl').")
        try:
            self.model, loading = Qwen2VLForConditionalGeneration.from_pretrained(
                directory, dtype=getattr(torch, resolved), attn_implementation="sdpa", output_loading_info=True
            )
            self.processor = AutoProcessor.from_pretrained(directory)
            # Pillow's resize, as the image processor of transformers 4.51 (OpenS2V's) did; the torchvision one differs.
            self.processor.image_processor = AutoImageProcessor.from_pretrained(
                directory,
                backend="pil",
                # As GME passes them: they override the checkpoint's own min/max_pixels (a `size` would not).
                min_pixels=min_image_tokens * PIXELS_PER_TOKEN,
                max_pixels=max_image_tokens * PIXELS_PER_TOKEN,
            )
        except (OSError, ValueError) as error:
            raise FileNotFoundError(
                f"`model` {model!r} ({directory}) could not be loaded as a Qwen2-VL model with its processor ({error}); "
                f"it must hold GME's files, e.g. from `hf download {GME_MODEL}`."
            ) from error
        # transformers fills missing tensors with random values; only the LM head (unused here) may be absent.
        missing = sorted(key for key in loading["missing_keys"] if not key.startswith("lm_head."))
        if missing:
            raise ValueError(
                f"`model` {model!r}: the weights in {str(directory)!r} lack {len(missing)} tensors, e.g. {missing[:5]}; fetch them again."
            )
        self.model.to(self.device).eval()
        self.processor.tokenizer.padding_side = "right"  # the last real token is then found from the attention mask
        self.num_frames = num_frames
        self.min_image_tokens = min_image_tokens
        self.max_image_tokens = max_image_tokens
        self.instruction = instruction
        self.batch_size = batch_size
        self.dtype = resolved
        self.digest = file_digest(*safetensors)
        self._description = {
            "name": self.name,
            "version": transformers.__version__,
            "model": model,
            "weights": str(directory),
            "digest": self.digest,
            "num_frames": num_frames,
            "min_image_tokens": min_image_tokens,
            "max_image_tokens": max_image_tokens,
            "instruction": instruction,
            "image_instruction": GME_DEFAULT_INSTRUCTION,
            "dtype": resolved,
            "embedding": "final hidden state of the last token, sequential positions, L2-normalised",
            "resize": "fetch_image (sides to multiples of 28, Pillow bicubic), then the Qwen2-VL processor (Pillow bicubic)",
        }

    def describe(self) -> dict:
        return dict(self._description)

    def embed_texts(self, texts: list[str], instruction: str | None = None) -> np.ndarray:
        """Texts as GME queries -> (N, D) unit embeddings.

        Args:
            texts: Non-empty strings.
            instruction: The system turn; None takes the scorer's `instruction`.
        """
        texts = list(texts)
        if not texts:
            raise ValueError("`texts` is empty.")
        for index, text in enumerate(texts):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"`texts[{index}]` must be a non-empty string, got {text!r}.")
        instruction = self.instruction if instruction is None else instruction
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError(f"`instruction` must be a non-empty string, got {instruction!r}.")
        out = []
        for start in range(0, len(texts), self.batch_size):
            chats = [gme_chat_text(text, instruction) for text in texts[start : start + self.batch_size]]
            inputs = self.processor(text=chats, padding=True, truncation=True, max_length=GME_MAX_LENGTH, return_tensors="pt")
            out.append(self._embed(inputs))
        return np.concatenate(out)

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """uint8 RGB (H, W, 3) images as GME corpus items (the default instruction) -> (N, D) unit embeddings."""
        from PIL import Image

        images = check_images(images)
        out = []
        chat = gme_chat_text(IMAGE_CONTENT, GME_DEFAULT_INSTRUCTION)
        for start in range(0, len(images), self.batch_size):
            batch = []
            for image in images[start : start + self.batch_size]:
                pil = Image.fromarray(np.ascontiguousarray(image))
                height, width = fetch_image_size(*image.shape[:2])
                batch.append(pil.resize((width, height), Image.Resampling.BICUBIC))
            # No truncation: an image's tokens must all stay (within GME's 1800 at up to 1280 image tokens).
            inputs = self.processor(text=[chat] * len(batch), images=batch, padding=True, return_tensors="pt")
            out.append(self._embed(inputs))
        return np.concatenate(out)

    def _embed(self, inputs) -> np.ndarray:
        """GME's forward: image features into the pad tokens, the language model with no position ids
        (sequential ones), the last real token's final hidden state, L2-normalised."""
        import torch

        model = self.model.model
        input_ids = inputs["input_ids"].to(self.device)
        attention_mask = inputs["attention_mask"].to(self.device)
        with torch.inference_mode():
            embeds = model.get_input_embeddings()(input_ids)
            if "pixel_values" in inputs:
                features = model.get_image_features(
                    inputs["pixel_values"].to(self.device), inputs["image_grid_thw"].to(self.device), return_dict=True
                ).pooler_output
                features = torch.cat(list(features)).to(embeds.dtype)
                mask = input_ids == self.model.config.image_token_id
                if int(mask.sum()) != features.shape[0]:
                    raise ValueError(f"{int(mask.sum())} image tokens in the text but {features.shape[0]} image features.")
                embeds[mask] = features
            hidden = model.language_model(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
            last = attention_mask.sum(dim=1) - 1
            pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last].float()
            return torch.nn.functional.normalize(pooled, p=2, dim=-1).cpu().numpy()

    def score_video(self, frames: np.ndarray, prompt: str) -> GmeVideoScore:
        """OpenS2V's GmeScore: the mean over `num_frames` evenly spaced frames (repeats counted) of each
        frame's similarity to the prompt; each distinct frame goes through the model once.

        Args:
            frames: uint8 RGB (F, H, W, 3) video.
            prompt: The text the video was generated from.
        """
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
            raise ValueError(f"`frames` must be uint8 RGB (F, H, W, 3) with F >= 1, got {frames.dtype} {frames.shape}.")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"`prompt` must be a non-empty string, got {prompt!r}.")
        indices = opens2v_frame_indices(frames.shape[0], self.num_frames)
        unique, inverse = np.unique(indices, return_inverse=True)
        query = self.embed_texts([prompt])[0].astype(np.float64)
        scores = self.embed_images(list(frames[unique])).astype(np.float64) @ query
        return GmeVideoScore(float(scores[inverse].mean()), tuple(float(s) for s in scores), tuple(int(i) for i in indices))
