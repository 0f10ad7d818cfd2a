"""Shared test setup: offline, no telemetry, tiny seeded components from one helper."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture
def tiny():
    """Fresh tiny-preset components (tests mutate weights and processors)."""
    from videomaker.loading import load_components

    return load_components("tiny")


@pytest.fixture(scope="session")
def reference_image():
    """A real photo with a face (scikit-image's astronaut), as uint8 (H, W, 3)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())
