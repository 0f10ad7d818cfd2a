"""Configuration of the preprocessing job, in groups; every key has a default a user can override.

videomaker preprocess --print-config=keys     # every key with its type, default and documentation
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from metrics.backends.registry import BackendSpec
from pipelines.actor_pool import ActorPoolConfig
from videomaker.subjects import HUMAN_CLASSES


@dataclass
class ClipsConfig:
    """How clips are cut from a source and sized.

    Args:
        num_frames: Frames of one training window.
        stride: Frame stride of a clip; shorter videos fall back to n_frames // num_frames.
        span_frames: Frames kept per clip at its stride (>= num_frames), within one shot:
            training draws a new `num_frames` window from them at every draw, as the authors'
            training drew a new window each time. `num_frames` keeps one fixed window.
        size: Output frames are size x size pixels (a multiple of 8).
        resize_policy: `stretch` (the paper's: the whole frame squeezed to size x size) or
            `center_crop` (keeps the aspect ratio, loses the sides).
        max_per_source: Clips cut from one source, non-overlapping and never across a shot cut.
            1 (a pre-clipped corpus such as CelebV-Text: one clip per file); e.g. 16 for long videos.
    """

    num_frames: int = 16
    stride: int = 8
    span_frames: int = 32
    size: int = 512
    resize_policy: Literal["center_crop", "stretch"] = "stretch"
    max_per_source: int = 1

    def __post_init__(self):
        for name in ("num_frames", "stride", "max_per_source"):
            if getattr(self, name) < 1:
                raise ValueError(f"Invalid ClipsConfig({name}={getattr(self, name)}): must be >= 1.")
        if self.span_frames < self.num_frames:
            raise ValueError(
                f"Invalid ClipsConfig(span_frames={self.span_frames}): must be >= num_frames "
                f"({self.num_frames}); use {self.num_frames} for one fixed window per clip."
            )
        if self.size < 8 or self.size % 8:
            raise ValueError(f"Invalid ClipsConfig(size={self.size}): must be a positive multiple of 8.")


@dataclass
class ShotsConfig:
    """Shot detection: clips never cross a cut.

    Args:
        detector: `content` (the HSV-difference content detector, CPU, no weights) or `none`
            (every source is one shot; skips a decoding pass).
        threshold: Content score (0-255) at which a new shot starts; 27 as in PySceneDetect.
        min_frames: A shot is at least this many frames long (closer cuts are ignored).
    """

    detector: Literal["content", "none"] = "content"
    threshold: float = 27.0
    min_frames: int = 15

    def __post_init__(self):
        if self.min_frames < 1:
            raise ValueError(f"Invalid ShotsConfig(min_frames={self.min_frames}): must be >= 1.")


@dataclass
class ReferencesConfig:
    """Reference images of a clip.

    Args:
        mode: `shp` (subject on white: Subject Highlight Preprocessing) or `raw_frame` (the
            candidate frame itself, for the paper's ablation rows without SHP). Detection and
            segmentation run in both, so both modes keep the same clips.
        candidates: Candidate reference frames per clip.
        per_clip: References kept per clip: the first usable candidates in their seeded order
            (<= candidates). Training draws one of them at every draw; 1 keeps one.
    """

    mode: Literal["shp", "raw_frame"] = "shp"
    candidates: int = 4
    per_clip: int = 4

    def __post_init__(self):
        if self.candidates < 1:
            raise ValueError(f"Invalid ReferencesConfig(candidates={self.candidates}): must be >= 1.")
        if not 1 <= self.per_clip <= self.candidates:
            raise ValueError(f"Invalid ReferencesConfig(per_clip={self.per_clip}): must be between 1 and candidates ({self.candidates}).")


@dataclass
class SourcesConfig:
    """Which source videos are accepted.

    Args:
        min_side: Videos whose short side is smaller are quarantined as too_small.
        supported_codecs: FFmpeg codec names accepted (e.g. [h264, hevc, vp9]); others are
            quarantined as unsupported_codec. None accepts whatever FFmpeg decodes.
        retry_quarantined: Re-run sources quarantined with a retryable reason.
    """

    min_side: int = 64
    supported_codecs: tuple[str, ...] | None = None
    retry_quarantined: bool = False


@dataclass
class SubjectsConfig:
    """How the subject of a clip is found and when it is too small.

    Args:
        default_class: For manifest rows without `subject_class`.
        human_classes: Classes handled as humans (face detection); the rest are objects.
        head_scale: Face box enlarged by this factor (and shifted up) to cover the head.
        min_face_fraction: A face narrower than this share of the frame's short side is too small.
        min_object_fraction: An object box whose short side is under this share of the frame's
            short side is too small.
    """

    default_class: str = "person"
    human_classes: tuple[str, ...] = HUMAN_CLASSES
    head_scale: float = 1.8
    min_face_fraction: float = 0.1
    min_object_fraction: float = 0.1


@dataclass
class ModelsConfig:
    """The detection and segmentation backends, by registry name and constructor options.

    Args:
        face_detector: Faces of human subjects (`cascade`, weight-free; `insightface`: model_dir).
        object_detector: Boxes of object subjects (`center-grabcut`, weight-free; `grounding-dino`:
            model_id_or_dir).
        segmenter: The subject mask (`grabcut`, weight-free; `sam`: checkpoint_path).
    """

    face_detector: BackendSpec = field(default_factory=lambda: BackendSpec("cascade"))
    object_detector: BackendSpec = field(default_factory=lambda: BackendSpec("center-grabcut"))
    segmenter: BackendSpec = field(default_factory=lambda: BackendSpec("grabcut"))


@dataclass
class LatentsConfig:
    """Optional VAE latents and text embeddings stored with each clip.

    Args:
        encode: Also store VAE latents and text embeddings (training skips the encoders).
        preset: Preset whose VAE and text encoder make those latents.
    """

    encode: bool = False
    preset: str = "tiny"


@dataclass
class ResourcesConfig:
    """CPUs, GPUs and actor pools of the stages.

    Args:
        decode_num_cpus: CPUs per decode task (probe to decode, and the weight-free stages); its
            libraries get max(1, floor(decode_num_cpus)) threads. 0.5 runs two single-threaded
            tasks per core, which keeps the core busy while one starts or hands its rows on.
        cpu_stage_num_cpus: CPUs per task of highlight when it runs after a segment actor.
        detect, segment, latents: Actor pools of the stages whose backends load models; weight-free
            detection and segmentation run inside the decode tasks instead.
    """

    decode_num_cpus: float = 0.5
    cpu_stage_num_cpus: float = 0.25
    detect: ActorPoolConfig = field(default_factory=ActorPoolConfig)
    segment: ActorPoolConfig = field(default_factory=ActorPoolConfig)
    latents: ActorPoolConfig = field(default_factory=ActorPoolConfig)

    def __post_init__(self):
        if self.decode_num_cpus <= 0 or self.cpu_stage_num_cpus <= 0:
            raise ValueError(
                f"Invalid ResourcesConfig(decode_num_cpus={self.decode_num_cpus}, "
                f"cpu_stage_num_cpus={self.cpu_stage_num_cpus}): each must be > 0."
            )


@dataclass
class OutputConfig:
    """How the dataset is written.

    Args:
        sources_per_part: Consecutive sources whose rows make one part file of `data/` (and of
            `quarantine/`); 256 clips of 16 JPEG frames at 512 px make a part of about 200-400 MB.
            Fixed for an output directory once written.
        sources_per_block: Sources per Ray Data block, the unit a task takes: large enough that a
            task's fixed cost (~0.1 s on 2 cores) is small beside its sources, even cheap ones
            (bench/RESULTS.md). Small runs use fewer, so that every decode slot gets work.
        flush_interval_s: Finished rows of parts still open are made durable (in `_staging/`) at
            least this often, so a kill loses at most about this much finished work.
    """

    sources_per_part: int = 256
    sources_per_block: int = 64
    flush_interval_s: float = 30.0

    def __post_init__(self):
        for name in ("sources_per_part", "sources_per_block"):
            if getattr(self, name) < 1:
                raise ValueError(f"Invalid OutputConfig({name}={getattr(self, name)}): must be >= 1.")
        if self.flush_interval_s <= 0:
            raise ValueError(f"Invalid OutputConfig(flush_interval_s={self.flush_interval_s}): must be > 0 seconds.")


@dataclass
class CurationTrackingConfig:
    """The MLflow run of the curation.

    Args:
        mlflow_tracking_uri: MLflow backend (e.g. sqlite:///mlflow.db); None skips MLflow.
        mlflow_experiment: Experiment of the curation run.
    """

    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "videomaker-curation"


# Groups that do not change a row: where things are, how fast they run, how they are logged.
_NOT_SHAPING = {"input", "output_dir", "run_id", "resources", "output", "tracking"}


@dataclass
class PreprocessConfig:
    """Subject Highlight Preprocessing (docs/method.md, section 5) of a video corpus.

    Args:
        input: Manifest (CSV, JSONL or Parquet with `path`, `caption`, optional `subject_class`,
            `source_id`) or a directory of videos; local paths or URIs pyarrow can open.
        output_dir: Where `data/`, `quarantine/`, markers and `summary.json` go.
        run_id: Recorded in every row; default: a hash of the config.
        seed: Mixed with each sample id for clip starts and reference candidates.
        clips: Frames, stride, span and size of the clips.
        shots: Shot detection.
        references: Reference images per clip and how they are made.
        sources: Which source videos are accepted.
        subjects: Human classes and the size limits of faces and objects.
        models: Detection and segmentation backends.
        latents: Optional VAE latents and text embeddings.
        resources: CPUs per task and the actor pools of the model stages.
        output: Part files, blocks and flushing.
        tracking: MLflow.
    """

    input: str
    output_dir: str
    run_id: str | None = None
    seed: int = 42
    clips: ClipsConfig = field(default_factory=ClipsConfig)
    shots: ShotsConfig = field(default_factory=ShotsConfig)
    references: ReferencesConfig = field(default_factory=ReferencesConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    subjects: SubjectsConfig = field(default_factory=SubjectsConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    latents: LatentsConfig = field(default_factory=LatentsConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    tracking: CurationTrackingConfig = field(default_factory=CurationTrackingConfig)

    def __post_init__(self):
        if self.run_id is None:
            self.run_id = self.config_hash()

    def config_hash(self) -> str:
        """Digest of everything that shapes the output rows (not paths, run id, resources, output layout,
        tracking, or whether quarantined sources are retried)."""
        shaping = {key: value for key, value in asdict(self).items() if key not in _NOT_SHAPING}
        shaping["sources"].pop("retry_quarantined")
        return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:16]
