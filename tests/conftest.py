"""Shared test setup: a machine of its own, offline, no telemetry, tiny seeded components from one helper."""

import os
import tempfile


def _isolate_from_this_machine() -> None:
    """No test reads or writes the real home directory or joins a Ray cluster it did not start.

    HOME, the XDG directories and every library cache point into one empty folder per test session
    (pytest-xdist workers inherit the controller's); uv's package cache is the one thing kept.
    `RAY_ADDRESS=local` makes a bare `ray.init()` start its own instance instead of joining the
    user's RAY_ADDRESS or the cluster a `ray start` recorded in Ray's address file. The Ray heads the
    tests start remove it from their own environment (jobs/local_services.py).
    """
    if os.environ.get("VIDEOMAKER_TEST_HOME"):
        return
    uv_cache = os.environ.get("UV_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "uv"
    )
    home = tempfile.mkdtemp(prefix="videomaker-test-home-")
    os.environ.update(
        {
            "VIDEOMAKER_TEST_HOME": home,
            "HOME": home,
            "UV_CACHE_DIR": uv_cache,
            "XDG_CACHE_HOME": f"{home}/.cache",
            "XDG_CONFIG_HOME": f"{home}/.config",
            "XDG_DATA_HOME": f"{home}/.local/share",
            "XDG_STATE_HOME": f"{home}/.local/state",
            "HF_HOME": f"{home}/.cache/huggingface",
            "TORCH_HOME": f"{home}/.cache/torch",
            "MPLCONFIGDIR": f"{home}/.config/matplotlib",
            "RAY_ADDRESS": "local",
        }
    )
    for name in (
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "TRANSFORMERS_CACHE",
        "VIDEOMAKER_MODELS_DIR",
        "RAY_AUTH_TOKEN",
        "RAY_AUTH_TOKEN_PATH",
        "RAY_AUTH_MODE",
        "MLFLOW_TRACKING_URI",
        "GOOGLE_APPLICATION_CREDENTIALS",
        *[k for k in os.environ if k.startswith("AWS_")],
    ):
        os.environ.pop(name, None)  # the user's cloud credentials and endpoints must not reach a test


_isolate_from_this_machine()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")  # see jobs/__init__.py: `uv run pytest` must not copy the venv

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)

# The longest end-to-end files first, so the two xdist workers (pyproject addopts) finish together; the cluster
# and object-storage files apart, since their Ray nodes together oversubscribe 2 cores (a node then times out starting).
LONGEST_FIRST = (
    "test_cluster.py",
    "test_train.py",
    "test_object_storage.py",
    "test_demo.py",
    "test_evaluate.py",
    "test_preprocess_e2e.py",
    "test_scoring.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file keeps its own order


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


@pytest.fixture(scope="session")
def tiny_metric_models(tmp_path_factory):
    """Tiny seeded metric models saved where the real loaders read them, as a backends config."""
    from metrics.backends import BackendSpec, MetricBackendsConfig
    from metrics.backends.random_init import save_random_dino, save_random_open_clip
    from tiny_models import save_tiny_face_pack, save_tiny_raft

    root = tmp_path_factory.mktemp("metric_models")
    return MetricBackendsConfig(
        clip=BackendSpec("open_clip", {"model": save_random_open_clip(root / "clip")}),
        dino=BackendSpec("transformers-dino", {"model": str(save_random_dino(root / "dino"))}),
        face=BackendSpec("insightface", {"model_dir": str(save_tiny_face_pack(root / "buffalo_l")), "det_size": 256}),
        flow=BackendSpec("raft", {"weights": str(save_tiny_raft(root / "raft_large.pth")), "num_flow_updates": 2}),
    )
