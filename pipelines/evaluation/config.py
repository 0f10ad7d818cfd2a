"""Configuration of an evaluation: which benchmark, which method, how to generate, score and log."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from metrics.backends import BackendSpec, MetricBackendsConfig
from pipelines.actor_pool import ActorPoolConfig
from pipelines.evaluation.benchmarks import SETS

GENERATED_KINDS = ("videomaker", "ip-adapter", "ip-adapter-plus", "ip-adapter-faceid")
METHOD_KINDS = (*GENERATED_KINDS, "imported")


@dataclass
class MethodConfig:
    """The method whose videos are evaluated.

    Args:
        kind: `videomaker` (our checkpoints, any preset or ablation), `ip-adapter`,
            `ip-adapter-plus`, `ip-adapter-faceid` (diffusers baselines on the preset's AnimateDiff
            base), or `imported` (videos another code base made: ID-Animator, PhotoMaker, VideoBooth).
        name: Label in tables, MLflow and file paths (default: the kind).
        preset: Model preset (name or saved directory); also the base of the IP-Adapter baselines.
        checkpoint: VideoMaker weights directory (None: the preset's untrained weights).
        weights, weight_name, subfolder, image_encoder_folder, scale: IP-Adapter weights (hub id or
            directory) as `load_ip_adapter` takes them; None picks the variant's published defaults.
        face: Face embedder of IP-Adapter-FaceID (an insightface model directory).
        videos: `imported` only: CSV/JSONL/Parquet with set, subject_id, prompt, seed, video.
    """

    kind: str = "videomaker"
    name: str | None = None
    preset: str = "tiny"
    checkpoint: str | None = None
    weights: str | None = None
    weight_name: str | None = None
    subfolder: str | None = None
    image_encoder_folder: str | None = None
    scale: float | None = None
    face: BackendSpec | None = None
    videos: str | None = None

    def __post_init__(self):
        if isinstance(self.face, dict):
            self.face = BackendSpec(**self.face)
        if self.kind not in METHOD_KINDS:
            raise ValueError(f"Invalid method.kind {self.kind!r}; choose from {list(METHOD_KINDS)}.")
        if self.kind == "imported" and not self.videos:
            raise ValueError("method.kind 'imported' needs method.videos: a manifest of set, subject_id, prompt, seed, video.")
        if self.kind == "ip-adapter-faceid" and self.face is None:
            raise ValueError("method.kind 'ip-adapter-faceid' needs method.face, e.g. {name: insightface, options: {model_dir: ...}}.")
        name = self.name or self.kind
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise ValueError(f"Invalid method.name {name!r}: use letters, digits, '-', '_' and '.' (it names folders).")
        self.name = name


@dataclass
class GenerationSettings:
    """Sampler settings (DDIM, eta 0).

    Args:
        num_inference_steps, guidance_scale: DDIM steps and classifier-free guidance scale.
        size: Square output size in pixels; None means the preset's resolution.
        fps: Frame rate of the saved mp4 and GIF.
        device, dtype: Where generation runs and in what precision (the published tables were
            generated in float32).
        negative_prompt: One negative prompt for every subject (the authors' benchmark script used
            `videomaker.pipeline.NEGATIVE_PROMPT_BENCHMARK` for all sets); None picks the human or
            object default of the released inference code per subject.
    """

    num_inference_steps: int = 30
    guidance_scale: float = 8.0
    size: int | None = None
    fps: int = 8
    device: str = "cpu"
    dtype: str = "float32"
    negative_prompt: str | None = None

    def __post_init__(self):
        if self.negative_prompt is not None and not isinstance(self.negative_prompt, str):
            raise ValueError(f"Invalid generation.negative_prompt {self.negative_prompt!r}: give a string, or null for the "
                             "per-subject defaults.")
        if self.num_inference_steps < 1 or self.guidance_scale < 1 or self.fps < 1:
            raise ValueError(f"Invalid generation settings {asdict(self)}: steps, guidance_scale and fps must be >= 1.")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"Invalid generation.dtype {self.dtype!r}; choose float32, float16 or bfloat16.")


@dataclass
class EvaluationConfig:
    """Generate a method's benchmark videos, score them, and log one MLflow run per evaluation.

    Args:
        benchmark: Manifest of subjects (subject_id, set, class, reference); see `benchmarks.py`.
        output_dir: Videos, scores and reports; re-running with the same directory resumes.
        method: Which method makes (or made) the videos.
        sets: Benchmark sets to run.
        seeds: Seeds per (subject, prompt); report N, since DD needs several (SPEC section 8).
        prompts_per_subject: Only the first N prompts per subject (smoke runs); None takes all.
        generation: Sampler settings.
        generators: Actor pool of generators; one pipeline per actor, one GPU each on a cluster.
        score_file: Which saved file the metrics read: `gif` (as the published DD scripts did) or `mp4`.
        backends, scorers, expected_frames: Metric models and their actor pool (see `metrics/`).
        mlflow_tracking_uri: MLflow backend (sqlite:///... or http://...); None skips MLflow.
        mlflow_experiment: Experiment of the evaluation runs.
        run_name: Name of the parent run (default: the method name).
    """

    benchmark: str
    output_dir: str
    method: MethodConfig = field(default_factory=MethodConfig)
    sets: list[str] = field(default_factory=lambda: list(SETS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    prompts_per_subject: int | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    generators: ActorPoolConfig = field(default_factory=lambda: ActorPoolConfig(num_cpus=0.5, batch_size=4))
    score_file: str = "gif"
    backends: MetricBackendsConfig = field(default_factory=MetricBackendsConfig)
    scorers: ActorPoolConfig = field(default_factory=lambda: ActorPoolConfig(num_cpus=0.5, batch_size=4))
    expected_frames: int | None = 16
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "videomaker-eval"
    run_name: str | None = None

    def __post_init__(self):
        unknown = [s for s in self.sets if s not in SETS]
        if unknown or not self.sets:
            raise ValueError(f"Invalid sets {self.sets}; choose one or more of {list(SETS)}.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"Invalid seeds {self.seeds}: give one or more distinct integers.")
        if self.score_file not in ("gif", "mp4"):
            raise ValueError(f"Invalid score_file {self.score_file!r}; choose 'gif' or 'mp4'.")
        self.run_name = self.run_name or self.method.name

    def as_params(self) -> dict[str, str]:
        """Flat `section.key -> value` strings for MLflow params."""
        flat: dict[str, str] = {}

        def walk(prefix: str, value) -> None:
            if isinstance(value, dict):
                for key, inner in value.items():
                    walk(f"{prefix}.{key}" if prefix else key, inner)
            else:
                flat[prefix] = str(value)

        walk("", asdict(self))
        return flat
