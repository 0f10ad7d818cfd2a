"""Model backends of the metrics, by role: CLIP, DINO, faces, optical flow and the opt-in groups' models.

`load_backends(MetricBackendsConfig(...))` builds them from registry names and options, so a
config file (or `--set face.options.model_dir=...`) picks weights without code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from metrics.backends.base import FaceEmbedder, FlowEstimator, ImageEmbedder, ImageTextEmbedder
from metrics.backends.registry import BackendRegistry, BackendSpec

ROLES = ("clip", "dino", "face", "flow")  # the paper's six metrics
# Backends of the opt-in metric groups (`metrics.suite.METRIC_GROUPS`); None: that metric is not computed.
OPTIONAL_ROLES = ("aesthetic", "natural", "face_cur", "gme")
ALL_ROLES = ROLES + OPTIONAL_ROLES


METRIC_BACKENDS = BackendRegistry(
    {
        "clip": {"open_clip": "metrics.backends.clip:OpenCLIPEmbedder"},
        "dino": {"transformers-dino": "metrics.backends.dino:DINOEmbedder"},
        "face": {"insightface": "metrics.backends.faces:InsightFaceEmbedder"},
        "flow": {"raft": "metrics.backends.flow:RAFTFlow", "opencv": "metrics.backends.flow:OpenCVFlow"},
        "aesthetic": {"laion-aesthetic": "metrics.backends.aesthetic:LAIONAestheticScorer"},
        "natural": {"openai-chat": "metrics.backends.natural:ChatNaturalScorer"},
        "face_cur": {"curricularface": "metrics.backends.curricularface:CurricularFaceSim"},
        "gme": {"gme-qwen2-vl": "metrics.backends.gme:GmeScorer"},
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
        aesthetic: OpenS2V's aesthetic score (`laion-aesthetic`: LAION's MLP on CLIP ViT-L/14), for the
            `opens2v` metric group; None skips it.
        natural: OpenS2V's NaturalScore by a multimodal chat model (`openai-chat`: base_url, model,
            api_key_env of any OpenAI-compatible endpoint), for the `opens2v` group; None skips it.
        face_cur: OpenS2V's FaceSim-Cur (`curricularface`: weights of the IR-101 backbone, model_dir
            of the insightface pack it detects with), for the `opens2v` group; None skips it.
        gme: OpenS2V's GmeScore (`gme-qwen2-vl`: model, the GME Qwen2-VL embedding model; 7B, a GPU
            backend in practice), for the `opens2v` group; None skips it.
        device: Torch device of the torch backends ("cuda" on GPU workers).
    """

    clip: BackendSpec = field(default_factory=lambda: BackendSpec("open_clip", {"model": "ViT-B-32", "pretrained": "openai"}))
    dino: BackendSpec = field(default_factory=lambda: BackendSpec("transformers-dino", {"model": "facebook/dino-vits16"}))
    face: BackendSpec | None = field(default_factory=lambda: BackendSpec("insightface", {"model_dir": "~/.insightface/models/buffalo_l"}))
    flow: BackendSpec = field(default_factory=lambda: BackendSpec("raft", {"weights": "C_T_V1"}))
    aesthetic: BackendSpec | None = None
    natural: BackendSpec | None = None
    face_cur: BackendSpec | None = None
    gme: BackendSpec | None = None
    device: str = "cpu"

    def __post_init__(self):
        # Every name and option is checked here, while the job plans, so a typo fails before any worker starts.
        for role in ALL_ROLES:
            spec = getattr(self, role)
            if spec is None and role in ("face", *OPTIONAL_ROLES):
                continue
            if spec is None:
                raise ValueError(f"Invalid MetricBackendsConfig({role}=None): only `face` may be None.")
            if spec.name not in METRIC_BACKENDS.names(role):
                raise ValueError(f"Invalid MetricBackendsConfig({role}.name={spec.name!r}). Available: {METRIC_BACKENDS.names(role)}")
            METRIC_BACKENDS.check(role, spec, where=f"MetricBackendsConfig({role}.options)", provided=("device",))


@dataclass
class MetricBackends:
    """The loaded models; `face` is None when Face Sim is not computed, an optional role when its metric is not."""

    clip: ImageTextEmbedder
    dino: ImageEmbedder
    face: FaceEmbedder | None
    flow: FlowEstimator
    aesthetic: object | None = None  # metrics.backends.aesthetic.LAIONAestheticScorer
    natural: object | None = None  # metrics.backends.natural.ChatNaturalScorer
    face_cur: object | None = None  # metrics.backends.curricularface.CurricularFaceSim
    gme: object | None = None  # metrics.backends.gme.GmeScorer

    def describe(self) -> dict:
        """Name, library version, weights and digest of every backend, keyed by role (optional roles only when loaded)."""
        described = {role: (getattr(self, role).describe() if getattr(self, role) is not None else None) for role in ROLES}
        return described | {role: getattr(self, role).describe() for role in OPTIONAL_ROLES if getattr(self, role) is not None}


def load_backend(role: str, spec: BackendSpec, *, device: str = "cpu") -> ImageTextEmbedder | ImageEmbedder | FaceEmbedder | FlowEstimator:
    """One backend by role, e.g. the face embedder that IP-Adapter-FaceID is conditioned on."""
    if role not in ALL_ROLES:
        raise ValueError(f"Unknown backend role {role!r}; choose from {list(ALL_ROLES)}.")
    return METRIC_BACKENDS.build(role, spec, where=f"{role} backend options", device=device)


def load_backends(config: MetricBackendsConfig) -> MetricBackends:
    """Build every backend the config names, on `config.device` where it is a torch model."""
    specs = {role: getattr(config, role) for role in ALL_ROLES if getattr(config, role) is not None}
    for role, spec in specs.items():  # all checked before any weights load
        METRIC_BACKENDS.check(role, spec, where=f"MetricBackendsConfig({role}.options)", provided=("device",))
    loaded = dict.fromkeys(ALL_ROLES)
    for role, spec in specs.items():
        loaded[role] = METRIC_BACKENDS.build(role, spec, device=config.device)
    return MetricBackends(**loaded)
