"""Grounding DINO open-vocabulary detection (transformers), prompted by the subject's class word."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metrics.backends.base import file_digest
from metrics.backends.registry import WeightSource, required_option, weight_at
from pipelines.preprocess.backends._common import check_class_name, clip_box, require
from pipelines.preprocess.backends.base import Box, check_image

# What a detector snapshot needs; other weight formats in the hub repository are skipped.
_SNAPSHOT_FILES = ["*.json", "*.txt", "*.safetensors"]


def grounding_prompt(class_name: str) -> str:
    """Grounding DINO's prompt format: lower case, each phrase ended by a dot ("dog" -> "dog.")."""
    return check_class_name(class_name).lower().rstrip(".").strip() + "."


def resolve_model_dir(model_id_or_dir: str | Path) -> Path:
    """A local `save_pretrained` directory as is; a hub id from the local Hugging Face cache (or hub)."""
    text = str(model_id_or_dir)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    looks_local = path.is_absolute() or text.startswith((".", "~")) or text.count("/") != 1
    if looks_local:
        raise FileNotFoundError(
            f"`model_id_or_dir` {text!r} is not a directory; pass a directory written by `save_pretrained` "
            "or a hub id such as 'IDEA-Research/grounding-dino-tiny'."
        )
    hub = require("huggingface_hub", "huggingface_hub", GroundingDinoDetector.name)
    try:
        return Path(hub.snapshot_download(text, allow_patterns=_SNAPSHOT_FILES))
    except (OSError, ValueError) as error:  # offline cache misses, unknown repositories, network failures
        raise FileNotFoundError(
            f"`model_id_or_dir` {text!r} is neither a local directory nor in the Hugging Face cache "
            f"({type(error).__name__}); stage it on a machine with internet with `hf download {text}` "
            "and copy the cache, or pass a `save_pretrained` directory."
        ) from error


# The published Grounding DINO repos; a folder named like one is staged from it.
GROUNDING_DINO_REPOS = ("IDEA-Research/grounding-dino-tiny", "IDEA-Research/grounding-dino-base")


class GroundingDinoDetector:
    """Boxes of a class word by Grounding DINO (`AutoModelForZeroShotObjectDetection`).

    Args:
        model_id_or_dir (str | Path): `save_pretrained` directory (model + processor) or hub id,
            e.g. "IDEA-Research/grounding-dino-tiny" (read from the local cache when offline).
        box_threshold (float, default 0.35): Minimum box score (best token probability) kept.
        text_threshold (float, default 0.25): Minimum token probability for a token to label a box.
        device (str, default "cpu"): Torch device, e.g. "cuda".

    Example:
        >>> boxes = GroundingDinoDetector("IDEA-Research/grounding-dino-tiny").detect(frame, "dog")
    """

    name = "grounding-dino"
    weight_free = False

    @classmethod
    def weights(cls, options: dict) -> list[WeightSource]:
        """The hub repo or folder `model_id_or_dir` names; a folder named like a published repo comes from it."""
        value = required_option(options, "model_id_or_dir")
        repos = {repo.split("/")[1]: repo for repo in GROUNDING_DINO_REPOS}
        basename = Path(value).expanduser().name
        return [weight_at("detector", value, hub=True, published=("hf-repo", repos[basename]) if basename in repos else None)]

    def __init__(
        self,
        model_id_or_dir: str | Path,
        *,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        device: str = "cpu",
    ) -> None:
        for argument, value in (("box_threshold", box_threshold), ("text_threshold", text_threshold)):
            if not 0 <= value <= 1:
                raise ValueError(f"`{argument}` must be in [0, 1], got {value}.")
        transformers = require("transformers", "transformers torch", self.name)
        directory = resolve_model_dir(model_id_or_dir)
        weights = sorted(directory.glob("*.safetensors")) or sorted(directory.glob("*.bin"))
        if not weights:
            raise FileNotFoundError(f"`model_id_or_dir` {str(directory)!r} holds no *.safetensors or *.bin weights.")
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold
        self.device = device
        self.version = file_digest(*weights)
        self._processor = transformers.AutoProcessor.from_pretrained(directory)
        self._model = transformers.AutoModelForZeroShotObjectDetection.from_pretrained(directory).to(device).eval()

    def detect(self, image: np.ndarray, class_name: str) -> list[Box]:
        """Boxes of `class_name` in `image` (uint8 RGB (H, W, 3)), best score first."""
        import torch

        check_image(image)
        prompt = grounding_prompt(class_name)
        height, width = image.shape[:2]
        inputs = self._processor(images=image, text=prompt, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self._model(**inputs)
        [found] = self._processor.post_process_grounded_object_detection(
            outputs,
            inputs["input_ids"],
            threshold=self.box_threshold,
            text_threshold=self.text_threshold,
            target_sizes=[(height, width)],
        )
        boxes = [clip_box(*b, s, width, height) for b, s in zip(found["boxes"].tolist(), found["scores"].tolist())]
        return sorted((b for b in boxes if b is not None), key=lambda b: b.score, reverse=True)
