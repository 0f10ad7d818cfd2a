"""Model backends of the metrics, by role: CLIP, DINO, faces and optical flow.

`load_backends(MetricBackendsConfig(...))` builds them from registry names and options, so a
config file (or `--set face.options.model_dir=...`) picks weights without code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metrics.backends.base import FaceEmbedder, FlowEstimator, ImageEmbedder, ImageTextEmbedder
from metrics.backends.registry import BackendRegistry, BackendSpec

ROLES = ("clip", "dino", "face", "flow")


METRIC_BACKENDS = BackendRegistry(
    {
        "clip": {"open_clip": "metrics.backends.clip:OpenCLIPEmbedder"},
        "dino": {"transformers-dino": "metrics.backends.dino:DINOEmbedder"},
        "face": {"insightface": "metrics.backends.faces:InsightFaceEmbedder"},
        "flow": {"raft": "metrics.backends.flow:RAFTFlow", "opencv": "metrics.backends.flow:OpenCVFlow"},
    }
)


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
        # Every name and option is checked here, while the job plans, so a typo fails before any worker starts.
        for role in ROLES:
            spec = getattr(self, role)
            if spec is None and role == "face":
                continue
            if spec is None:
                raise ValueError(f"Invalid MetricBackendsConfig({role}=None): only `face` may be None.")
            if spec.name not in METRIC_BACKENDS.names(role):
                raise ValueError(f"Invalid MetricBackendsConfig({role}.name={spec.name!r}). Available: {METRIC_BACKENDS.names(role)}")
            METRIC_BACKENDS.check(role, spec, where=f"MetricBackendsConfig({role}.options)", provided=("device",))


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
            role: (backend.describe() if backend is not None else None) for role, backend in ((role, getattr(self, role)) for role in ROLES)
        }


def load_backend(role: str, spec: BackendSpec, *, device: str = "cpu") -> ImageTextEmbedder | ImageEmbedder | FaceEmbedder | FlowEstimator:
    """One backend by role, e.g. the face embedder that IP-Adapter-FaceID is conditioned on."""
    if role not in ROLES:
        raise ValueError(f"Unknown backend role {role!r}; choose from {list(ROLES)}.")
    return METRIC_BACKENDS.build(role, spec, where=f"{role} backend options", device=device)


def load_backends(config: MetricBackendsConfig) -> MetricBackends:
    """Build every backend the config names, on `config.device` where it is a torch model."""
    specs = {role: getattr(config, role) for role in ROLES if getattr(config, role) is not None}
    for role, spec in specs.items():  # all checked before any weights load
        METRIC_BACKENDS.check(role, spec, where=f"MetricBackendsConfig({role}.options)", provided=("device",))
    loaded = dict.fromkeys(ROLES)
    for role, spec in specs.items():
        loaded[role] = METRIC_BACKENDS.build(role, spec, device=config.device)
    return MetricBackends(**loaded)
