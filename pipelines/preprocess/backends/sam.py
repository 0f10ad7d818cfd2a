"""Segment Anything prompted by the detected box: the segmenter docs/method.md, section 5 names."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metrics.backends.base import file_digest
from metrics.backends.registry import WeightSource, required_option, weight_at
from pipelines.preprocess.backends._common import check_box, require
from pipelines.preprocess.backends.base import Box, check_image

# The published checkpoints (segment-anything's README) and where they are.
SAM_CHECKPOINTS = ("sam_vit_h_4b8939.pth", "sam_vit_l_0b3195.pth", "sam_vit_b_01ec64.pth")
SAM_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


class SAMSegmenter:
    """The subject's mask by SAM (`segment_anything`) from a box prompt, one mask per box.

    The checkpoint is read as a plain state dict with `torch.load(weights_only=True)` (no pickled
    code runs) into the architecture `sam_model_registry[model_type]` builds.

    Args:
        checkpoint_path (str | Path): SAM weights, e.g. `sam_vit_b_01ec64.pth`.
        model_type (str, default "vit_b"): Key of `segment_anything.sam_model_registry`
            ("vit_b", "vit_l", "vit_h"); must match the checkpoint.
        device (str, default "cpu"): Torch device, e.g. "cuda".

    Example:
        >>> mask = SAMSegmenter("models/sam_vit_b_01ec64.pth").segment(frame, box)  # bool (H, W)
    """

    name = "sam"
    weight_free = False

    @classmethod
    def weights(cls, options: dict) -> list[WeightSource]:
        """The checkpoint `checkpoint_path` names; one of the published ones comes from segment-anything's URL."""
        value = required_option(options, "checkpoint_path")
        basename = Path(value).expanduser().name
        return [weight_at("sam", value, hub=False, published=("url", SAM_URL + basename) if basename in SAM_CHECKPOINTS else None)]

    def __init__(self, checkpoint_path: str | Path, *, model_type: str = "vit_b", device: str = "cpu") -> None:
        path = Path(checkpoint_path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"`checkpoint_path` {str(path)!r} is not a file; download a SAM checkpoint such as "
                "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth on a machine with internet "
                "and copy it there."
            )
        segment_anything = require("segment_anything", "segment-anything", self.name)
        registry = segment_anything.sam_model_registry
        if model_type not in registry:
            raise ValueError(f"`model_type` {model_type!r} is not a SAM architecture; available: {sorted(registry)}.")
        import torch

        model = registry[model_type]()
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except RuntimeError as error:
            first_line = str(error).splitlines()[0]
            raise ValueError(
                f"`checkpoint_path` {str(path)!r} does not fit SAM `model_type` {model_type!r} ({first_line}); "
                "pass the model_type the checkpoint was trained as."
            ) from error
        self.checkpoint_path = path
        self.model_type = model_type
        self.device = device
        self.version = file_digest(path)
        self._predictor = segment_anything.SamPredictor(model.to(device).eval())

    def segment(self, image: np.ndarray, box: Box) -> np.ndarray:
        """Bool mask (H, W) of the subject in `box` (SAM's single-mask output)."""
        check_image(image)
        check_box(box, image)
        self._predictor.set_image(image, image_format="RGB")
        masks, _, _ = self._predictor.predict(box=np.array(box.as_list()), multimask_output=False)
        return masks[0].astype(bool)
