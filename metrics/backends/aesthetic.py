"""LAION's aesthetic predictor as OpenS2V-Eval runs it: an MLP on L2-normalised CLIP ViT-L/14 image embeddings.

The MLP is five linear layers (768 -> 1024 -> 128 -> 64 -> 16 -> 1) with dropout between the first
four and no activation at all, so in evaluation it is one affine map of the unit embedding; its
state dict keys are `layers.{0,2,4,6,7}.{weight,bias}` (the dropouts hold indices 1, 3 and 5).
OpenS2V reads it from `aesthetic-model.pth` of the hub repo `BestWishYsh/OpenS2V-Weight` and takes the
image embeddings of `openai/clip-vit-large-patch14`; here the CLIP is the project's open_clip
backend with OpenAI's ViT-L-14 weights (built with QuickGELU, as those weights need).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from metrics.backends.base import DIGEST_CHARS, check_images, file_digest, is_hub_file, read_state_dict, weight_file
from metrics.backends.clip import OpenCLIPEmbedder
from metrics.backends.registry import WeightSource, option_or_default
from metrics.video_quality import OPENS2V_AESTHETIC_FRAMES, aesthetic_video_score, opens2v_frame_indices

if TYPE_CHECKING:
    import torch

OPENS2V_AESTHETIC_WEIGHTS = "BestWishYsh/OpenS2V-Weight/aesthetic-model.pth"
MLP_LINEAR_INDICES = (0, 2, 4, 6, 7)  # positions of the Linear layers in the Sequential; dropouts in between
MLP_WIDTHS = (1024, 128, 64, 16, 1)
MLP_DROPOUTS = (0.2, 0.2, 0.1)
EXPECTED_KEYS = tuple(f"layers.{index}.{part}" for index in MLP_LINEAR_INDICES for part in ("weight", "bias"))


def build_aesthetic_mlp(input_size: int = 768) -> torch.nn.Sequential:
    """LAION's aesthetic MLP layout (held as `.layers` by `build_aesthetic_predictor`), randomly initialised."""
    from torch import nn

    modules, width = [], input_size
    for position, out in enumerate(MLP_WIDTHS):
        modules.append(nn.Linear(width, out))
        if position < len(MLP_DROPOUTS):
            modules.append(nn.Dropout(MLP_DROPOUTS[position]))
        width = out
    return nn.Sequential(*modules)


def build_aesthetic_predictor(input_size: int = 768) -> torch.nn.Module:
    """A module whose state dict keys are the published file's: the MLP held as `.layers`."""
    from torch import nn

    predictor = nn.Module()
    predictor.layers = build_aesthetic_mlp(input_size)
    return predictor


def read_aesthetic_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The MLP's weights from a torch state dict file (`.pth`), checked for LAION's keys and widths."""

    state = read_state_dict(
        path,
        expected=f"LAION's aesthetic MLP state dict (OpenS2V's {OPENS2V_AESTHETIC_WEIGHTS})",
        refetch="`hf download BestWishYsh/OpenS2V-Weight aesthetic-model.pth`",
    )
    missing, unexpected = sorted(set(EXPECTED_KEYS) - set(state)), sorted(set(state) - set(EXPECTED_KEYS))
    if missing or unexpected:
        raise ValueError(
            f"`weights` {str(path)!r} is not LAION's aesthetic MLP: missing keys {missing}, unexpected keys {unexpected[:10]}; "
            f"expected {list(EXPECTED_KEYS)}."
        )
    widths = [state[f"layers.{index}.weight"].shape[0] for index in MLP_LINEAR_INDICES]
    if tuple(widths) != MLP_WIDTHS:
        raise ValueError(f"`weights` {str(path)!r} has layer widths {widths}; LAION's aesthetic MLP has {list(MLP_WIDTHS)}.")
    return state


@dataclass(frozen=True)
class AestheticVideoScore:
    """A video's aesthetic score, each frame's score (None: not sampled) and the sampled frame indices."""

    score: float
    frame_scores: tuple[float | None, ...]
    indices: tuple[int, ...]


class LAIONAestheticScorer:
    """Per-image aesthetic scores (LAION's predictor, roughly 1 to 10) and OpenS2V's per-video score.

    Args:
        weights (str, default "BestWishYsh/OpenS2V-Weight/aesthetic-model.pth"): The MLP's state dict:
            a local `.pth` file, or OWNER/REPO/FILE of a hub file (read from the Hugging Face cache,
            or downloaded).
        clip_model (str, default "ViT-L-14"): The open_clip model (`OpenCLIPEmbedder`'s `model`); its
            image embeddings must have the MLP's input width (768).
        clip_pretrained (str, default "openai"): `OpenCLIPEmbedder`'s `pretrained`.
        quick_gelu (bool or "auto", default "auto"): `OpenCLIPEmbedder`'s `quick_gelu`.
        num_frames (int, default 32): Frames `score_video` samples (OpenS2V: 32, evenly spaced, repeats kept).
        device (str, default "cpu"): Torch device of both models.
        batch_size (int, default 32): Images per CLIP forward.

    Example:
        >>> scorer = LAIONAestheticScorer()
        >>> scorer.score_video(frames).score
        5.2
    """

    name = "laion-aesthetic"

    @classmethod
    def weights(cls, options: dict) -> list[WeightSource]:
        """The MLP file (hub file or local) and the CLIP's weights (as `OpenCLIPEmbedder` declares them)."""
        weights = option_or_default(cls, options, "weights")
        if not is_hub_file(weights):
            mlp = WeightSource("aesthetic", "local", weights)
        else:
            mlp = WeightSource("aesthetic", "hf-file", weights)
        clip = OpenCLIPEmbedder.weights(_clip_options(cls, options))
        return [mlp, *(replace(source, name=f"aesthetic-{source.name}") for source in clip)]

    @classmethod
    def staged_options(cls, options: dict, staged: dict[str, str]) -> dict:
        """`options` reading a staged copy of the CLIP (`OpenCLIPEmbedder.staged_options`); `weights` is a
        plain value staging replaces itself."""
        clip = OpenCLIPEmbedder.staged_options(_clip_options(cls, options), staged)
        options = dict(options)
        options["clip_model"] = clip["model"]
        if "pretrained" in clip:
            options["clip_pretrained"] = clip["pretrained"]
        else:
            options.pop("clip_pretrained", None)
        if "quick_gelu" in clip:
            options["quick_gelu"] = clip["quick_gelu"]
        return options

    def __init__(
        self,
        weights: str = OPENS2V_AESTHETIC_WEIGHTS,
        *,
        clip_model: str = "ViT-L-14",
        clip_pretrained: str = "openai",
        quick_gelu: bool | Literal["auto"] = "auto",
        num_frames: int = OPENS2V_AESTHETIC_FRAMES,
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        import torch

        if not (isinstance(num_frames, int) and num_frames >= 1):
            raise ValueError(f"`num_frames` must be an integer >= 1, got {num_frames!r}.")
        path = weight_file(weights)
        state = read_aesthetic_state_dict(path)
        input_size = state["layers.0.weight"].shape[1]
        self.clip = OpenCLIPEmbedder(clip_model, clip_pretrained, quick_gelu=quick_gelu, device=device, batch_size=batch_size)
        embed_dim = self.clip.model.visual.output_dim
        if embed_dim != input_size:
            raise ValueError(
                f"`weights` {weights!r} expects {input_size}-dim embeddings but `clip_model` {clip_model!r} gives {embed_dim}; "
                f"LAION's MLP of OpenS2V reads CLIP ViT-L/14 (768): use clip_model='ViT-L-14', clip_pretrained='openai'."
            )
        self.mlp = build_aesthetic_predictor(input_size)
        self.mlp.load_state_dict(state, strict=True)
        self.mlp.to(device).eval()
        self.device = torch.device(device)
        self.num_frames = num_frames
        clip = self.clip.describe()
        mlp_digest = file_digest(path)
        self.digest = "sha256:" + _sha(f"{mlp_digest}|{clip['digest']}|{clip['activation']}")
        self._description = {
            "name": self.name,
            "version": torch.__version__,
            "model": "LAION aesthetic MLP on L2-normalised CLIP image embeddings",
            "weights": weights,
            "digest": self.digest,
            "mlp_digest": mlp_digest,
            "clip": clip,
            "num_frames": num_frames,
        }

    def describe(self) -> dict:
        return dict(self._description)

    def score_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, D) CLIP image embeddings (any norm) -> (N,) scores of their unit vectors."""
        import torch

        embeddings = np.asarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] == 0:
            raise ValueError(f"`embeddings` must be a non-empty (N, D) array, got shape {embeddings.shape}.")
        with torch.inference_mode():
            batch = torch.from_numpy(embeddings).to(self.device)
            batch = batch / torch.linalg.vector_norm(batch, dim=-1, keepdim=True)
            return self.mlp.layers(batch).squeeze(1).float().cpu().numpy()

    def score_images(self, images: list[np.ndarray]) -> np.ndarray:
        """uint8 RGB (H, W, 3) images -> (N,) aesthetic scores."""
        return self.score_embeddings(self.clip.embed_images(check_images(images)))

    def score_video(self, frames: np.ndarray) -> AestheticVideoScore:
        """OpenS2V's score of a video: the mean over `num_frames` evenly spaced frames (repeats counted).

        Each distinct frame goes through the models once; `frame_scores` has one score per frame of
        the video (None for frames not sampled).
        """
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 1:
            raise ValueError(f"`frames` must be uint8 RGB (F, H, W, 3), got {frames.dtype} {frames.shape}.")
        indices = opens2v_frame_indices(frames.shape[0], self.num_frames)
        unique = np.unique(indices)
        scores = np.full(frames.shape[0], np.nan)
        scores[unique] = self.score_images(list(frames[unique]))
        per_frame = tuple(None if np.isnan(s) else float(s) for s in scores)
        return AestheticVideoScore(aesthetic_video_score(scores, indices), per_frame, tuple(int(i) for i in indices))


def _clip_options(cls: type, options: dict) -> dict:
    clip = {"model": option_or_default(cls, options, "clip_model"), "pretrained": option_or_default(cls, options, "clip_pretrained")}
    if "quick_gelu" in options:
        clip["quick_gelu"] = options["quick_gelu"]
    return clip


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]
