"""Configuration of an evaluation: which benchmark, which method, how to generate, score and log."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, get_args

from metrics.backends import METRIC_BACKENDS, BackendSpec, MetricBackendsConfig
from metrics.io import GIF_FRAMES
from metrics.opens2v import OPENS2V_SETS
from metrics.suite import FACE_PROTOCOLS, check_groups
from pipelines.actor_pool import ActorPoolConfig
from pipelines.evaluation.benchmarks import SETS
from videomaker.variants import IP_ADAPTER_VARIANTS, IPAdapterVariant

FrameFile = Literal["lossless", "mp4", "gif"]  # the files each generated item has: .mkv, .mp4, .gif
FRAME_FILES = get_args(FrameFile)

MethodKind = Literal["videomaker", IPAdapterVariant, "imported"]
METHOD_KINDS = get_args(MethodKind)
GENERATED_KINDS = METHOD_KINDS[:-1]

# The choices live beside the code that implements them; these aliases make them closed config types.
FaceProtocol = Literal[FACE_PROTOCOLS]
GifFrames = Literal[GIF_FRAMES]
BenchmarkSet = Literal[(*SETS, *OPENS2V_SETS.values())]  # the paper's three; OpenS2V-Eval's, taken from its manifest


@dataclass
class MethodConfig:
    """The method whose videos are evaluated.

    Args:
        kind: `videomaker` (our checkpoints, any preset or ablation), `ip-adapter`,
            `ip-adapter-plus`, `ip-adapter-faceid` (diffusers baselines on the preset's AnimateDiff
            base), or `imported` (videos another code base made: ID-Animator, PhotoMaker, VideoBooth).
        name: Label in tables, MLflow and file paths (default: the kind).
        preset: Model preset (name or saved directory); also the base of the IP-Adapter baselines.
        checkpoint: VideoMaker weights: a checkpoint directory, released weights (a .bin, a folder
            holding one, hf:OWNER/REPO/FILE) or a registered version (models:/NAME/VERSION,
            models:/NAME@ALIAS, read from `mlflow_tracking_uri`); None: the preset's untrained weights.
        weights, weight_name, subfolder, image_encoder_folder, scale: IP-Adapter weights (hub id or
            directory) as `load_ip_adapter` takes them; None picks the variant's published defaults.
            FaceID: `weight_name: ip-adapter-faceid-portrait_sd15.bin` is the portrait variant the
            author's baseline ran. (`jobs/configs/baselines/` holds the author's settings.)
        motion_adapter: IP-Adapter baselines: hub id or directory of the motion adapter replacing the
            preset's (the author's baselines: guoyww/animatediff-motion-adapter-v1-5-2); None keeps it.
        reference_size: IP-Adapter baselines: stretch the reference to this square size before the
            image encoder's own preprocessing and FaceID's face detection (the author: 640); None
            passes it as read.
        lora_weight_name, lora_scale: IP-Adapter-FaceID's LoRA: None applies the one stored in the
            FaceID file (the portrait file has none), a file name (kohya format, e.g.
            ip-adapter-faceid_sd15_lora.safetensors) loads that one instead; scale 1 as released,
            0 leaves it out.
        generator_device: IP-Adapter baselines: device of each seed's torch.Generator (`cpu`, the
            same noise everywhere; the author's scripts used `cuda`).
        face_embedding_protocol: IP-Adapter-FaceID: how the reference's face embedding is taken,
            `paper` (as the author: the RGB array handed to insightface, the largest face) or
            `corrected` (BGR, the largest face).
        face: Face embedder of IP-Adapter-FaceID (an insightface model directory).
        videos: `imported` only: CSV/JSONL/Parquet with set, subject_id, prompt, seed, video.
        switches: `videomaker` only: inference switches overriding the checkpoint's, e.g.
            `{ref_in_motion: false}` (the authors' ablation rows without motion training kept the
            reference in temporal attention in training and skipped it at inference). None keeps
            the checkpoint's. Both are recorded in every video's sidecar and in MLflow.
    """

    kind: MethodKind = "videomaker"
    name: str | None = None
    preset: str = "tiny"
    checkpoint: str | None = None
    weights: str | None = None
    weight_name: str | None = None
    subfolder: str | None = None
    image_encoder_folder: str | None = None
    scale: float | None = None
    motion_adapter: str | None = None
    reference_size: int | None = None
    lora_weight_name: str | None = None
    lora_scale: float = 1.0
    generator_device: str = "cpu"
    face_embedding_protocol: FaceProtocol = "corrected"
    face: BackendSpec | None = None
    videos: str | None = None
    switches: dict | None = None

    def __post_init__(self):
        if self.switches is not None:
            from dataclasses import fields

            from videomaker.pisa import PISASwitches

            known = {f.name for f in fields(PISASwitches)}
            if set(self.switches) - known:
                raise ValueError(f"Invalid method.switches {self.switches!r}: give a mapping of some of {sorted(known)}.")
            if self.kind != "videomaker":
                raise ValueError(f"method.switches applies to kind 'videomaker' only, not {self.kind!r}.")
        if self.kind == "imported" and not self.videos:
            raise ValueError("method.kind 'imported' needs method.videos: a manifest of set, subject_id, prompt, seed, video.")
        baseline_only = {"motion_adapter": self.motion_adapter, "reference_size": self.reference_size}
        if self.kind not in IP_ADAPTER_VARIANTS and any(value is not None for value in baseline_only.values()):
            raise ValueError(
                f"method.motion_adapter and method.reference_size apply to the IP-Adapter kinds "
                f"{list(IP_ADAPTER_VARIANTS)} only, not {self.kind!r}."
            )
        if self.kind != "ip-adapter-faceid" and (self.lora_weight_name is not None or self.lora_scale != 1.0):
            raise ValueError(f"method.lora_weight_name and method.lora_scale apply to kind 'ip-adapter-faceid' only, not {self.kind!r}.")
        if self.reference_size is not None and self.reference_size < 1:
            raise ValueError(f"Invalid method.reference_size {self.reference_size!r}: give a size in pixels, or null.")
        if self.lora_scale < 0:
            raise ValueError(f"Invalid method.lora_scale {self.lora_scale!r}: give a weight >= 0 (0 leaves the LoRA out).")
        if self.kind == "ip-adapter-faceid" and self.face is None:
            raise ValueError("method.kind 'ip-adapter-faceid' needs method.face, e.g. {name: insightface, options: {model_dir: ...}}.")
        if self.face is not None:  # checked while the job plans, before any generation actor starts
            METRIC_BACKENDS.check("face", self.face, where="method.face.options", provided=("device",))
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
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    negative_prompt: str | None = None

    def __post_init__(self):
        if self.num_inference_steps < 1 or self.guidance_scale < 1 or self.fps < 1:
            raise ValueError(f"Invalid generation settings {asdict(self)}: steps, guidance_scale and fps must be >= 1.")


@dataclass
class EvaluationConfig:
    """Generate a method's benchmark videos, score them, and log one MLflow run per evaluation.

    Args:
        benchmark: Manifest of subjects (subject_id, set, class, reference); see `benchmarks.py`.
        output_dir: Videos, scores and reports; re-running with the same directory resumes.
        method: Which method makes (or made) the videos.
        sets: Benchmark sets to run. An OpenS2V-Eval manifest (`*_Eval.json`) as `benchmark` runs its
            own domain's set (`opens2v_human`, `opens2v_open`, `opens2v_single`) whatever this says.
        seeds: Seeds per (subject, prompt); report N, since DD needs several (docs/method.md, section 8).
        prompts_per_subject: Only the first N prompts per subject (smoke runs); None takes all. An
            OpenS2V manifest has one prompt per entry: this is not read there.
        generation: Sampler settings.
        generators: Actor pool of generators; one pipeline per actor, one GPU each on a cluster.
        embedding_frames: Which saved file CLIP-T, CLIP-I, DINO-I, T.Cons and Face Sim read:
            `lossless` (the exact generated frames, as the author scored them; default), `mp4` or
            `gif`. An item without that file (imported videos) falls back to lossless, mp4, gif
            in that order; every record names the file it read.
        dd_frames: Which saved file DD reads: `gif` (as the published DD; default), `mp4` or
            `lossless`; same fallback.
        dd_gif_frames: How DD reads a GIF whose identical consecutive frames were merged:
            `expand` (back to `expected_frames` by frame duration; default) or `decoded` (the
            frames as decoded, what the author's DD script iterated over, with its pair-count
            rule on that number).
        face_protocol: Face Sim protocol: `paper` (the author's steps; comparable with the
            published tables) or `corrected` (BGR, largest face; default). See docs/scoring.md.
        metric_groups: The paper's six (`paper`, always) plus opt-in `vbench` and `opens2v` metrics in
            the same scoring pass (metrics.suite.METRIC_GROUPS; docs/metrics_opens2v.md).
        score_cache: Keep each video's scores per unit, backend and protocol, and reuse them on a
            re-run: adding a metric group computes only its metrics, new weights for one backend
            recompute only its metrics, nothing new calls no model (`metrics.score_cache`). Default True.
        score_cache_dir: Where that cache lives (default `<output_dir>/score_cache`); share one
            folder between evaluations to reuse scores of identical videos.
        score_file: Replaced by `embedding_frames` and `dd_frames`; setting it is refused.
        backends, scorers, expected_frames: Metric models and their actor pool (see `metrics/`).
        mlflow_tracking_uri: MLflow backend (sqlite:///... or http://...); None skips MLflow.
        mlflow_experiment: Experiment of the evaluation runs.
        run_name: Name of the parent run (default: the method name).
    """

    benchmark: str
    output_dir: str
    method: MethodConfig = field(default_factory=MethodConfig)
    sets: list[BenchmarkSet] = field(default_factory=lambda: list(SETS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    prompts_per_subject: int | None = None
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    generators: ActorPoolConfig = field(default_factory=lambda: ActorPoolConfig(num_cpus=0.5, batch_size=4))
    embedding_frames: FrameFile = "lossless"
    dd_frames: FrameFile = "gif"
    dd_gif_frames: GifFrames = "expand"
    face_protocol: FaceProtocol = "corrected"
    metric_groups: tuple[str, ...] = ("paper",)
    score_cache: bool = True
    score_cache_dir: str | None = None
    score_file: str | None = None
    backends: MetricBackendsConfig = field(default_factory=MetricBackendsConfig)
    scorers: ActorPoolConfig = field(default_factory=lambda: ActorPoolConfig(num_cpus=0.5, batch_size=4))
    expected_frames: int | None = 16
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "videomaker-eval"
    run_name: str | None = None

    def __post_init__(self):
        self.metric_groups = check_groups(self.metric_groups)
        if not self.sets:
            raise ValueError(f"Invalid sets {self.sets}; choose one or more of {list(SETS)}.")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"Invalid seeds {self.seeds}: give one or more distinct integers.")
        if self.score_file is not None:
            raise ValueError(
                f"EvaluationConfig(score_file={self.score_file!r}) is no longer read: the embedding metrics and DD read "
                "different files now. Use embedding_frames (lossless, mp4 or gif; default lossless) and dd_frames "
                "(gif, mp4 or lossless; default gif) instead."
            )
        self.run_name = self.run_name or self.method.name

    def as_params(self) -> dict[str, str]:
        """Flat `section.key -> value` strings for MLflow params."""
        from pipelines.tracking import flatten_params

        return flatten_params(self)
