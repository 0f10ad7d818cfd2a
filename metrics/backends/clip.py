"""CLIP ViT-B/32 through open_clip: one image forward per frame serves CLIP-T, CLIP-I and T.Cons.

OpenAI's CLIP weights were trained with QuickGELU (x * sigmoid(1.702 x)). open_clip builds
`ViT-B-32` with `nn.GELU` and only warns when OpenAI's weights go into it, which shifts every
embedding; this backend builds QuickGELU whenever the weights are OpenAI's and records the
activation it built in `describe()`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from metrics.backends.base import DIGEST_CHARS, check_images, state_dict_digest
from metrics.backends.registry import WeightSource, option_or_default

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

SCHEMAS = ("hf-hub:", "local-dir:")
# Keys OpenAI's TorchScript release carries besides the weights (open_clip drops them too).
OPENAI_JIT_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")


class OpenCLIPEmbedder:
    """Image and text embeddings of an open_clip model, with CLIP's own preprocessing.

    Args:
        model (str, default "ViT-B-32"): open_clip architecture name (`open_clip.list_models()`),
            or `hf-hub:org/repo` / `local-dir:/path` holding `open_clip_config.json` and weights.
        pretrained (str, default "openai"): For an architecture name, a pretrained tag (read from
            the Hugging Face hub cache, or downloaded) or the path of a local checkpoint file: a
            state dict (`.pt`, `.bin`, `.safetensors`) or OpenAI's TorchScript release (`ViT-B-32.pt`).
        quick_gelu (bool or "auto", default "auto"): The MLP activation. "auto" builds QuickGELU
            when the weights were trained with it: the `openai` tag (or any tag open_clip marks
            so), OpenAI's release file (a TorchScript archive, its file name or its SHA-256), a
            hub repo or hub-cache snapshot of OpenAI's weights, or an `open_clip_config.json`
            saying `"quick_gelu": true`; otherwise what the architecture's config says (GELU for
            `ViT-B-32`). True or False force it, e.g. True for a state dict of OpenAI's weights
            saved under another name.
        device (str, default "cpu"): Torch device.
        batch_size (int, default 32): Images per forward.

    Example:
        >>> clip = OpenCLIPEmbedder()  # the paper's ViT-B-32 with OpenAI weights, QuickGELU
        >>> clip.describe()["activation"]
        'QuickGELU'
        >>> clip.embed_images(frames).shape
        (16, 512)
    """

    name = "open_clip"

    @classmethod
    def weights(cls, options: dict) -> list[WeightSource]:
        """What staging fetches for these options: the hub repo, local folder or file, or open_clip's MODEL:TAG."""
        model, pretrained = option_or_default(cls, options, "model"), option_or_default(cls, options, "pretrained")
        if model.startswith("hf-hub:"):
            return [WeightSource("clip", "hf-repo", model.removeprefix("hf-hub:"))]
        if model.startswith("local-dir:"):
            return [WeightSource("clip", "local", model.removeprefix("local-dir:"))]
        if Path(pretrained).expanduser().is_file():
            return [WeightSource("clip", "local", pretrained)]
        return [WeightSource("clip", "open_clip", f"{model}:{pretrained}")]

    @classmethod
    def staged_options(cls, options: dict, staged: dict[str, str]) -> dict:
        """`options` reading a staged copy of open_clip's MODEL:TAG (`staged`: source -> path): a hub
        layout loads as `local-dir:`, a single file as `pretrained`."""
        model, pretrained = option_or_default(cls, options, "model"), option_or_default(cls, options, "pretrained")
        path = staged.get(f"{model}:{pretrained}")
        if path is None:
            return options
        options = dict(options)
        import open_clip

        if options.get("quick_gelu", "auto") == "auto" and open_clip.get_pretrained_cfg(model, pretrained).get("quick_gelu"):
            options["quick_gelu"] = True  # the staged copy alone no longer says its weights (OpenAI's) need QuickGELU
        if Path(path).is_dir():
            options["model"] = f"local-dir:{path}"
            options.pop("pretrained", None)
        else:
            options["pretrained"] = path
        return options

    def __init__(
        self,
        model: str = "ViT-B-32",
        pretrained: str = "openai",
        *,
        quick_gelu: bool | Literal["auto"] = "auto",
        device: str = "cpu",
        batch_size: int = 32,
    ) -> None:
        import open_clip
        import torch

        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
        if not (isinstance(quick_gelu, bool) or quick_gelu == "auto"):
            raise ValueError(f"`quick_gelu` must be True, False or 'auto', got {quick_gelu!r}.")
        sourced_by_name = model.startswith(SCHEMAS)
        path = None if sourced_by_name else Path(pretrained).expanduser()
        is_file = path is not None and path.is_file()
        if not sourced_by_name:
            if model not in open_clip.list_models():
                raise ValueError(
                    f"`model` {model!r} is neither an open_clip architecture nor prefixed by one of {SCHEMAS}. "
                    f"Available: {open_clip.list_models()}"
                )
            if not is_file and pretrained not in open_clip.list_pretrained_tags_by_model(model):
                raise FileNotFoundError(
                    f"`pretrained` {pretrained!r} is neither a checkpoint file nor a pretrained tag of {model} "
                    f"(tags: {open_clip.list_pretrained_tags_by_model(model)}); on an offline machine copy the "
                    f"checkpoint file there and pass its path."
                )
        sha256 = _sha256(path) if is_file else None
        torchscript = is_file and _is_torchscript(path)
        use_quick_gelu, reason = _resolve_quick_gelu(model, pretrained, quick_gelu, path if is_file else None, sha256, torchscript)
        overrides = {"force_quick_gelu": True} if use_quick_gelu else ({"quick_gelu": False} if use_quick_gelu is False else {})
        # OpenAI's TorchScript release is read with torch.jit.load (open_clip's weights_only load refuses it).
        weights = None if sourced_by_name or torchscript else (str(path) if is_file else pretrained)
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(model, pretrained=weights, device=device, **overrides)
        except RuntimeError as error:
            if "download" not in str(error).lower():
                raise
            raise FileNotFoundError(
                f"open_clip could not fetch `pretrained` {pretrained!r} for {model} ({error}); on an offline machine "
                f"copy the checkpoint file (or its Hugging Face cache) there and pass its path."
            ) from error
        if torchscript:
            _load_torchscript_weights(self.model, path)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._description = {
            "name": self.name,
            "version": open_clip.__version__,
            "model": model,
            "weights": model if sourced_by_name else pretrained,
            "digest": f"sha256:{sha256[:DIGEST_CHARS]}" if is_file else state_dict_digest(self.model),
            "activation": built_activation(self.model),
            "activation_source": reason,
        }
        if use_quick_gelu and self._description["activation"] != "QuickGELU":
            raise RuntimeError(
                f"open_clip built {self._description['activation']} for {model} although QuickGELU was asked for ({reason})."
            )

    def describe(self) -> dict:
        return dict(self._description)

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        import torch
        from PIL import Image

        images = check_images(images)
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                pixels = torch.stack([self.preprocess(Image.fromarray(image)) for image in chunk]).to(self.device)
                out.append(self.model.encode_image(pixels).float().cpu().numpy())
        return np.concatenate(out)

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        if not texts or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"`texts` must be a non-empty list of strings, got {texts!r}.")
        with torch.inference_mode():
            tokens = self.tokenizer(list(texts)).to(self.device)
            return self.model.encode_text(tokens).float().cpu().numpy()


def built_activation(model: torch.nn.Module) -> str:
    """The MLP activation a built open_clip model uses: "QuickGELU", "GELU" or the class name found."""
    from open_clip.transformer import QuickGELU
    from torch import nn

    for module in model.modules():
        if isinstance(module, QuickGELU):
            return "QuickGELU"
        if isinstance(module, nn.GELU):
            return "GELU"
    return "unknown"


def openai_releases(model: str) -> list[dict]:
    """Pretrained configs of `model` trained with QuickGELU (open_clip's `openai` tag among them)."""
    import open_clip

    tags = open_clip.list_pretrained_tags_by_model(model) if model in open_clip.list_models() else []
    return [cfg for cfg in (open_clip.get_pretrained_cfg(model, tag) for tag in tags) if cfg.get("quick_gelu")]


def _openai_hub_repos() -> set[str]:
    """Hub repos (org/name) holding OpenAI's CLIP weights, as open_clip's `openai` tags name them."""
    import open_clip

    return {
        posixpath.split(open_clip.get_pretrained_cfg(model, "openai")["hf_hub"])[0].rstrip("/")
        for model, tag in open_clip.list_pretrained()
        if tag == "openai" and open_clip.get_pretrained_cfg(model, "openai").get("hf_hub")
    }


def _resolve_quick_gelu(
    model: str, pretrained: str, option, path: Path | None, sha256: str | None, torchscript: bool
) -> tuple[bool | None, str]:
    """(QuickGELU?, why): True/False force the activation; None leaves it to the model's config."""
    import open_clip

    if option is not None and option != "auto":
        return bool(option), f"quick_gelu={option} given"
    if model.startswith("hf-hub:"):
        repo = model.removeprefix("hf-hub:")
        if repo in _openai_hub_repos():
            return True, f"hub repo {repo} holds OpenAI's weights"
        return None, "open_clip_config.json of the hub repo"
    if model.startswith("local-dir:"):
        directory = Path(model.removeprefix("local-dir:")).expanduser()
        config = _read_json(directory / "open_clip_config.json").get("model_cfg", {})
        if "quick_gelu" in config:
            return None, f"open_clip_config.json says quick_gelu={config['quick_gelu']}"
        for repo in _openai_hub_repos():  # a hub-cache snapshot: .../models--org--name/snapshots/<rev>
            if f"models--{repo.replace('/', '--')}" in directory.parts:
                return True, f"hub-cache snapshot of {repo}, OpenAI's weights"
        return None, "open_clip_config.json (no quick_gelu: GELU)"
    architecture = bool((open_clip.get_model_config(model) or {}).get("quick_gelu", False))
    if path is None:
        tag_says = open_clip.get_pretrained_cfg(model, pretrained).get("quick_gelu")
        if tag_says is not None:
            return bool(tag_says), f"pretrained tag {pretrained!r} was trained with {'QuickGELU' if tag_says else 'GELU'}"
        return architecture, f"architecture config of {model}"
    if torchscript:
        return True, "TorchScript archive, the format of OpenAI's CLIP release"
    for cfg in openai_releases(model):
        url = cfg.get("url", "")
        if url and path.name == posixpath.basename(url):
            return True, f"file name {path.name} of OpenAI's release"
        if url and "openaipublic" in url and sha256.startswith(url.split("/")[-2]):
            return True, "SHA-256 of OpenAI's release"
    if not architecture and openai_releases(model):
        logger.warning(
            "`pretrained` %s is not recognisable as OpenAI's CLIP release, so %s is built with GELU as its "
            "config says; if the file holds OpenAI's weights (trained with QuickGELU), pass quick_gelu=True.",
            path,
            model,
        )
    return architecture, f"architecture config of {model} (file not recognised as OpenAI's)"


def _load_torchscript_weights(model, path: Path) -> None:
    """Copy the weights of a TorchScript CLIP (OpenAI's release format) into an open_clip model."""
    import torch

    state = dict(torch.jit.load(str(path), map_location="cpu").state_dict())
    for key in OPENAI_JIT_EXTRA_KEYS:
        state.pop(key, None)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"`pretrained` {str(path)!r} is a TorchScript archive whose weights do not fit the model: {error}") from error


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or "/code/" in name for name in archive.namelist())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # open_clip reports a missing or broken config itself
