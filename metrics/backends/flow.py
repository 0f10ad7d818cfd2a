"""Optical flow for the dynamic degree: RAFT as published, and a weight-free OpenCV approximation."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from metrics.backends.base import file_digest, state_dict_digest

RAFT_MIN_SIDE = 128  # its correlation pyramid needs 16 px feature maps at 1/8 scale


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] < 2:
        raise ValueError(f"`frames` must be uint8 RGB (F >= 2, H, W, 3), got {frames.dtype} {frames.shape}.")
    return frames


class RAFTFlow:
    """torchvision's `raft_large` with the original `raft-things` weights, as VBench runs it.

    Frames go in as [-1, 1] floats, replicate-padded to a multiple of 8 (split evenly, as RAFT's
    `InputPadder` does) and the flow is cut back to the frame size.

    Args:
        weights (str, default "C_T_V1"): A `Raft_Large_Weights` name (C_T_V1 is the things
            checkpoint the published DD used) or the path of a local `raft_large` state dict.
        num_flow_updates (int, default 20): Refinement iterations (SPEC: 20).
        device (str, default "cpu"): Torch device.
        batch_size (int, default 8): Frame pairs per forward.
    """

    name = "raft"

    def __init__(self, weights: str = "C_T_V1", *, num_flow_updates: int = 20, device: str = "cpu", batch_size: int = 8):
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
            model = raft_large(weights=Raft_Large_Weights[weights])
            digest = state_dict_digest(model)
        else:
            raise FileNotFoundError(
                f"`weights` {weights!r} is neither a file nor one of {list(Raft_Large_Weights.__members__)}; on an "
                f"offline machine save torchvision's raft_large C_T_V1 state dict to a file and pass its path."
            )
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.num_flow_updates = num_flow_updates
        self.batch_size = batch_size
        self._description = {
            "name": self.name,
            "version": torchvision.__version__,
            "model": "raft_large",
            "weights": weights,
            "digest": digest,
            "num_flow_updates": num_flow_updates,
        }

    def describe(self) -> dict:
        return dict(self._description)

    def consecutive_flows(self, frames: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        frames = _check_frames(frames)
        height, width = frames.shape[1:3]
        if min(height, width) < RAFT_MIN_SIDE:
            raise ValueError(f"`frames` of {width}x{height} are too small for RAFT, which needs both sides >= {RAFT_MIN_SIDE}.")
        pad_h, pad_w = (-height) % 8, (-width) % 8
        padding = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        video = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
        video = F.pad(video, padding, mode="replicate")
        out = []
        with torch.inference_mode():
            for start in range(0, len(frames) - 1, self.batch_size):
                stop = min(start + self.batch_size, len(frames) - 1)
                flow = self.model(video[start:stop], video[start + 1 : stop + 1], num_flow_updates=self.num_flow_updates)[-1]
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

    def __init__(self, method: Literal["dis", "farneback"] = "dis"):
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
