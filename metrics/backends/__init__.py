"""Model backends of the metrics, by role: CLIP, DINO, faces and optical flow.

`load_backends(MetricBackendsConfig(...))` builds them from registry names and options, so a
config file (or `--set face.options.model_dir=...`) picks weights without code.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field

from metrics.backends.base import FaceEmbedder, FlowEstimator, ImageEmbedder, ImageTextEmbedder


ROLES = ("clip", "dino", "face", "flow")


def _registry() -> dict[str, dict[str, type]]:
    from metrics.backends.clip import OpenCLIPEmbedder
    from metrics.backends.dino import DINOEmbedder
    from metrics.backends.faces import InsightFaceEmbedder
    from metrics.backends.flow import OpenCVFlow, RAFTFlow

    return {
        "clip": {"open_clip": OpenCLIPEmbedder},
        "dino": {"transformers-dino": DINOEmbedder},
        "face": {"insightface": InsightFaceEmbedder},
        "flow": {"raft": RAFTFlow, "opencv": OpenCVFlow},
    }


@dataclass
class BackendSpec:
    """A backend by registry name plus its constructor options (weights, sizes, batch size)."""

    name: str
    options: dict = field(default_factory=dict)


@dataclass
class MetricBackendsConfig:
    """Which model computes which metric; the defaults are the published ones (docs/method.md, section 7).

    Args:
        clip: CLIP for CLIP-T, CLIP-I and T.Cons (`open_clip`: model, pretrained, quick_gelu; OpenAI's
            weights are built with QuickGELU, see docs/metric-models.md).
        dino: DINO for DINO-I (`transformers-dino`: model hub id or directory; layer_norm_eps, resize).
        face: Faces for Face Sim (`insightface`: model_dir of buffalo_l); None skips Face Sim.
        flow: Optical flow for DD (`raft`: weights, num_flow_updates, crop_to_frame; `opencv`: method,
            weight-free approximation).
        device: Torch device of the torch backends ("cuda" on GPU workers).
    """

    clip: BackendSpec = field(default_factory=lambda: BackendSpec("open_clip", {"model": "ViT-B-32", "pretrained": "openai"}))
    dino: BackendSpec = field(default_factory=lambda: BackendSpec("transformers-dino", {"model": "facebook/dino-vits16"}))
    face: BackendSpec | None = field(default_factory=lambda: BackendSpec("insightface", {"model_dir": "~/.insightface/models/buffalo_l"}))
    flow: BackendSpec = field(default_factory=lambda: BackendSpec("raft", {"weights": "C_T_V1"}))
    device: str = "cpu"

    def __post_init__(self):
        registry = _registry()
        for role in ROLES:
            spec = getattr(self, role)
            if spec is None and role == "face":
                continue
            if spec is None:
                raise ValueError(f"Invalid MetricBackendsConfig({role}=None): only `face` may be None.")
            if isinstance(spec, dict):  # from YAML
                spec = BackendSpec(**spec)
                setattr(self, role, spec)
            if spec.name not in registry[role]:
                raise ValueError(f"Invalid MetricBackendsConfig({role}.name={spec.name!r}). Available: {sorted(registry[role])}")


@dataclass
class MetricBackends:
    """The loaded models; `face` is None when Face Sim is not computed."""

    clip: ImageTextEmbedder
    dino: ImageEmbedder
    face: FaceEmbedder | None
    flow: FlowEstimator

    def describe(self) -> dict:
        """Name, library version, weights and digest of every backend, keyed by role."""
        return {
            role: (backend.describe() if backend is not None else None)
            for role, backend in ((role, getattr(self, role)) for role in ROLES)
        }


def _constructor(role: str, spec: BackendSpec, device: str) -> tuple[type, dict]:
    """The backend class and its options, checked against its signature before any weights load."""
    cls = _registry()[role][spec.name]
    options = dict(spec.options)
    accepted = inspect.signature(cls).parameters
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"Invalid MetricBackendsConfig({role}.options): {spec.name} takes no {unknown}. Valid options: {sorted(accepted)}"
        )
    if "device" in accepted:
        options.setdefault("device", device)
    return cls, options


def load_backend(role: str, spec: BackendSpec, *, device: str = "cpu"):
    """One backend by role, e.g. the face embedder that IP-Adapter-FaceID is conditioned on."""
    if role not in ROLES:
        raise ValueError(f"Unknown backend role {role!r}; choose from {list(ROLES)}.")
    if spec.name not in _registry()[role]:
        raise ValueError(f"Unknown {role} backend {spec.name!r}. Available: {sorted(_registry()[role])}")
    cls, options = _constructor(role, spec, device)
    return cls(**options)


def load_backends(config: MetricBackendsConfig) -> MetricBackends:
    """Build every backend the config names, on `config.device` where it is a torch model."""
    planned = {role: _constructor(role, getattr(config, role), config.device)  # check all before loading any
               for role in ROLES if getattr(config, role) is not None}
    loaded = dict.fromkeys(ROLES)
    for role, (cls, options) in planned.items():
        loaded[role] = cls(**options)
    return MetricBackends(**loaded)
