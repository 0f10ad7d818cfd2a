"""What the metric suite needs from each model, whatever loads it.

A backend says who it is (`describe()`: name, library version, weights and their digest) so every
score can be traced to the exact weights that produced it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # torch loads only with a torch backend
    import torch

DIGEST_CHARS = 16


@runtime_checkable
class ImageTextEmbedder(Protocol):
    """CLIP: images and prompts into one embedding space."""

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        """uint8 RGB (H, W, 3) images -> (N, D) embeddings."""

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Prompts -> (N, D) embeddings."""

    def describe(self) -> dict: ...


@runtime_checkable
class ImageEmbedder(Protocol):
    """DINO: images into a self-supervised feature space."""

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray: ...

    def describe(self) -> dict: ...


@dataclass(frozen=True)
class DetectedFace:
    """A face box in pixels (x1/y1 exclusive) and whatever the backend needs to embed it later."""

    x0: float
    y0: float
    x1: float
    y1: float
    score: float
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        return max(self.x1 - self.x0, 0.0) * max(self.y1 - self.y0, 0.0)


@runtime_checkable
class FaceEmbedder(Protocol):
    """Face detection plus recognition, split so only the face that counts is embedded."""

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Every face in a uint8 RGB image."""

    def embed(self, image: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The identity embedding of one detected face of `image`."""

    def describe(self) -> dict: ...


@runtime_checkable
class FlowEstimator(Protocol):
    """Optical flow between consecutive frames."""

    def consecutive_flows(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB (F, H, W, 3) -> (F - 1, H', W', 2) flow in pixels, (u, v) per pixel.

        H', W' is the frame size, or the padded size a backend's reference scores (RAFT: multiples of 8).
        """

    def describe(self) -> dict: ...


def check_images(images: Iterable[np.ndarray], argument: str = "images") -> list[np.ndarray]:
    """Refuse anything but a non-empty list of uint8 RGB (H, W, 3) arrays."""
    images = list(images)
    if not images:
        raise ValueError(f"`{argument}` is empty.")
    for index, image in enumerate(images):
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
            shape = getattr(image, "shape", None)
            raise ValueError(f"`{argument}[{index}]` must be a uint8 RGB (H, W, 3) array, got {type(image).__name__} {shape}.")
    return images


def file_digest(*paths: str | Path) -> str:
    """`sha256:` and a prefix of the digest of the files' bytes, read in order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
    return f"sha256:{digest.hexdigest()[:DIGEST_CHARS]}"


def state_dict_digest(module: torch.nn.Module) -> str:
    """`sha256:` and a prefix of the digest of a torch module's weights (names, shapes, values).

    Works the same whether the weights came from a hub, a cache or a local file.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
    return f"sha256:{digest.hexdigest()[:DIGEST_CHARS]}"


def _byte_dtype():
    import torch

    return torch.uint8


_HUB_FILE = re.compile(r"[\w-][\w.-]*/[\w.-]+/.+")


def is_hub_file(weights: str) -> bool:
    """Whether `weights` names a hub file (OWNER/REPO/FILE) rather than an existing local path."""
    return not Path(weights).expanduser().exists() and bool(_HUB_FILE.fullmatch(weights))


def weight_file(weights: str) -> Path:
    """The local file `weights` names: a path, or a hub file OWNER/REPO/FILE from the hub cache, else downloaded.

    A local path is returned as it is, existing or not: the loader names a missing one.
    """
    if not is_hub_file(weights):
        return Path(weights).expanduser()
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    owner, repo, filename = weights.split("/", 2)
    cached = try_to_load_from_cache(f"{owner}/{repo}", filename)
    if isinstance(cached, str):
        return Path(cached)
    try:
        return Path(hf_hub_download(f"{owner}/{repo}", filename))
    except Exception as error:  # noqa: BLE001 - offline misses, 404s and network errors get one actionable message
        raise FileNotFoundError(
            f"`weights` {weights!r}: could not get {filename!r} of hub repo {owner}/{repo} ({type(error).__name__}: {error}). "
            f"Offline, stage it (`videomaker models stage DIR`, then `--models-dir DIR`) or download it with "
            f"`hf download {owner}/{repo} {filename}` and pass the file's path."
        ) from None


def read_state_dict(path: str | Path, *, expected: str, refetch: str) -> dict[str, torch.Tensor]:
    """The tensors of a torch weights file (no pickled code: `weights_only`), a `state_dict` wrapper and a
    DataParallel `module.` prefix removed; errors name the file, what was `expected` in it and how to `refetch` it."""
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"`weights` {str(path)!r}: no such file; expected {expected}. {refetch}.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - a truncated or foreign file gets one actionable message
        raise ValueError(
            f"`weights` {str(path)!r} could not be read as a torch state dict ({type(error).__name__}: {error}); fetch it again: {refetch}."
        ) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"`weights` {str(path)!r} holds a {type(state).__name__}, not a state dict of tensors.")
    return {key.removeprefix("module."): value for key, value in state.items()}
