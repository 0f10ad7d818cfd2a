"""Optical flow for the dynamic degree: RAFT as published, and a weight-free OpenCV approximation."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from metrics.backends.base import file_digest, state_dict_digest
from metrics.backends.registry import WeightSource, option_or_default

RAFT_MIN_SIDE = 128  # its correlation pyramid needs 16 px feature maps at 1/8 scale


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
        raise ValueError(f"`frames` must be uint8 RGB (F >= 2, H, W, 3), got {frames.dtype} {frames.shape}.")
    return frames


class RAFTFlow:
    """torchvision's `raft_large` with the original `raft-things` weights, as VBench runs it.

    Frames go in as floats in [0, 255] mapped to [-1, 1] (2 * x / 255 - 1, RAFT's own mapping),
    replicate-padded to a multiple of 8 split evenly on both sides (RAFT's `InputPadder`, the
    "sintel" mode VBench uses), with `num_flow_updates` refinements, keeping the last (full
    resolution) flow. VBench takes a pair's top 5 % magnitudes over that padded flow, so by
    default the flow is returned at the padded size; frame sizes that are multiples of 8 (512 px)
    are not padded at all.

    Args:
        weights (str, default "C_T_V1"): A `Raft_Large_Weights` name (C_T_V1 is the things
            checkpoint the published DD used; read from torch hub's checkpoint cache,
            `$TORCH_HOME/hub/checkpoints/`, or downloaded) or the path of a local `raft_large`
            state dict.
        num_flow_updates (int, default 20): Refinement iterations (VBench: 20).
        crop_to_frame (bool, default False): Cut the flow back to the frame size instead of
            returning it over the padded frame as VBench scores it.
        device (str, default "cpu"): Torch device.
        batch_size (int, default 8): Frame pairs per forward.
    """

    name = "raft"

    @classmethod
    def weights(cls, options: dict) -> list[WeightSource]:
        """A state dict file, or the torchvision `Raft_Large_Weights` tag `weights` names."""
        weights = option_or_default(cls, options, "weights")
        return [WeightSource("raft", "local" if Path(weights).expanduser().exists() else "torchvision", weights)]

    def __init__(
        self, weights: str = "C_T_V1", *, num_flow_updates: int = 20, crop_to_frame: bool = False, device: str = "cpu", batch_size: int = 8
    ) -> None:
        import torch
        import torchvision
        from torchvision.models.optical_flow import Raft_Large_Weights, raft_large

        if num_flow_updates < 1 or batch_size < 1:
            raise ValueError(f"`num_flow_updates` and `batch_size` must be >= 1, got {num_flow_updates} and {batch_size}.")
        path = Path(weights).expanduser()
        if path.is_file():
            model = raft_large(weights=None)
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            digest = file_digest(path)
        elif weights in Raft_Large_Weights.__members__:
            checkpoint = Path(torch.hub.get_dir()) / "checkpoints" / Path(Raft_Large_Weights[weights].url).name
            try:
                model = raft_large(weights=Raft_Large_Weights[weights])
            except OSError as error:  # offline without the cached checkpoint (URLError is an OSError)
                raise FileNotFoundError(
                    f"`weights` {weights!r}: torchvision could not read {checkpoint} nor download it ({error}); on an "
                    f"offline machine save the file at Raft_Large_Weights.{weights}.url there, or pass a state dict path."
                ) from error
            digest = state_dict_digest(model)
        else:
            raise FileNotFoundError(
                f"`weights` {weights!r} is neither a file nor one of {list(Raft_Large_Weights.__members__)}; on an "
                f"offline machine save torchvision's raft_large C_T_V1 state dict to a file and pass its path."
            )
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.num_flow_updates = num_flow_updates
        self.crop_to_frame = bool(crop_to_frame)
        self.batch_size = batch_size
        self._description = {
            "name": self.name,
            "version": torchvision.__version__,
            "model": "raft_large",
            "weights": weights,
            "digest": digest,
            "num_flow_updates": num_flow_updates,
            "flow_area": "frame" if crop_to_frame else "padded to a multiple of 8 (VBench)",
        }

    def describe(self) -> dict:
        return dict(self._description)

    def consecutive_flows(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB (F, H, W, 3) -> (F - 1, H', W', 2) flow in pixels; H', W' are H, W rounded up to
        multiples of 8 (the padded frame), or H, W with `crop_to_frame`."""
        import torch
        import torch.nn.functional as F

        frames = _check_frames(frames)
        height, width = frames.shape[1:3]
        if min(height, width) < RAFT_MIN_SIDE:
            raise ValueError(f"`frames` of {width}x{height} are too small for RAFT, which needs both sides >= {RAFT_MIN_SIDE}.")
        pad_h, pad_w = (-height) % 8, (-width) % 8
        padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        video = F.pad(torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float(), padding, mode="replicate")
        video = 2 * (video / 255.0) - 1.0  # RAFT's mapping, after its padding, as VBench runs it
        out = []
        with torch.inference_mode():
            for start in range(0, len(frames) - 1, self.batch_size):
                stop = min(start + self.batch_size, len(frames) - 1)
                flow = self.model(video[start:stop], video[start + 1 : stop + 1], num_flow_updates=self.num_flow_updates)[-1]
                if self.crop_to_frame:
                    flow = flow[:, :, padding[2] : padding[2] + height, padding[0] : padding[0] + width]
                out.append(flow.permute(0, 2, 3, 1).float().cpu().numpy())
        return np.concatenate(out)


class OpenCVFlow:
    """Weight-free dense flow (OpenCV DIS or Farneback) on grayscale frames.

    An approximation of the published DD, which used RAFT: it tracks large textured motion well
    but underestimates motion in flat regions, so its DD is not comparable to published numbers.

    Args:
        method (str, default "dis"): "dis" (DIS, medium preset) or "farneback".
    """

    name = "opencv"

    def __init__(self, method: Literal["dis", "farneback"] = "dis") -> None:
        import cv2

        if method not in ("dis", "farneback"):
            raise ValueError(f"`method` must be 'dis' or 'farneback', got {method!r}.")
        self.method = method
        self._cv2 = cv2
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "dis" else None
        self._description = {"name": self.name, "version": cv2.__version__, "model": method, "weights": None, "digest": None}

    def describe(self) -> dict:
        return dict(self._description)

    def consecutive_flows(self, frames: np.ndarray) -> np.ndarray:
        cv2 = self._cv2
        gray = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in _check_frames(frames)]
        flows = []
        for previous, current in zip(gray[:-1], gray[1:]):
            if self._dis is not None:
                flows.append(self._dis.calc(previous, current, None))
            else:
                flows.append(cv2.calcOpticalFlowFarneback(previous, current, None, 0.5, 4, 21, 3, 7, 1.5, 0))
        return np.stack(flows).astype(np.float32)
