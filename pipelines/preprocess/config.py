"""Configuration of the preprocessing job; every field has a default a user can override."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Literal

from pipelines.actor_pool import ActorPoolConfig


@dataclass
class BackendConfig:
    """A model backend by registry name plus its constructor options (paths, thresholds)."""

    name: str
    options: dict = field(default_factory=dict)


@dataclass
class PreprocessConfig:
    """Subject Highlight Preprocessing (docs/method.md, section 5) of a video corpus.

    Args:
        input: Manifest (CSV, JSONL or Parquet with `path`, `caption`, optional `subject_class`,
            `source_id`) or a directory of videos; local paths or URIs pyarrow can open.
        output_dir: Where `data/`, `quarantine/`, markers and `summary.json` go.
        run_id: Recorded in every row; default: a hash of the config.
        num_frames: Frames of one training window.
        stride: Frame stride of a clip; shorter videos fall back to n_frames // num_frames.
        clip_span_frames: Frames kept per clip at its stride (>= num_frames), within one shot:
            training draws a new `num_frames` window from them at every draw, as the authors'
            training drew a new window each time. `num_frames` keeps one fixed window.
        size: Output frames are size x size pixels.
        resize_policy: `stretch` (the paper's: the whole frame squeezed to size x size) or
            `center_crop` (keeps the aspect ratio, loses the sides).
        seed: Mixed with each sample id for clip starts and reference candidates.
        max_clips_per_source: Clips cut from one source, non-overlapping and never across a shot cut.
            1 (a pre-clipped corpus such as CelebV-Text: one clip per file); e.g. 16 for long videos.
        shot_detector: `content` (the HSV-difference content detector, CPU, no weights) or `none`
            (every source is one shot; skips a decoding pass).
        shot_threshold: Content score (0-255) at which a new shot starts; 27 as in PySceneDetect.
        min_shot_frames: A shot is at least this many frames long (closer cuts are ignored).
        reference_candidates: Candidate reference frames per clip.
        references_per_clip: References kept per clip: the first usable candidates in their seeded
            order (<= reference_candidates). Training draws one of them at every draw; 1 keeps one.
        reference: `shp` (subject on white: Subject Highlight Preprocessing) or `raw_frame` (the
            candidate frame itself, for the paper's ablation rows without SHP). Detection and
            segmentation run in both, so both modes keep the same clips.
        min_source_side: Videos whose short side is smaller are quarantined as too_small.
        supported_codecs: FFmpeg codec names accepted (e.g. [h264, hevc, vp9]); others are
            quarantined as unsupported_codec. None accepts whatever FFmpeg decodes.
        default_subject_class: For manifest rows without `subject_class`.
        human_classes: Classes handled as humans (face detection); the rest are objects.
        head_scale: Face box enlarged by this factor (and shifted up) to cover the head.
        min_face_fraction: A face narrower than this share of the frame's short side is too small.
        min_object_fraction: An object box whose short side is under this share of the frame's
            short side is too small.
        face_detector, object_detector, segmenter: Backends by registry name and options.
        detect, segment, latents: Actor pools of the stages whose backends load models; weight-free
            detection and segmentation run inside the decode tasks instead.
        decode_num_cpus: CPUs per decode task (probe to decode, and the weight-free stages); its
            libraries get max(1, floor(decode_num_cpus)) threads. 0.5 runs two single-threaded
            tasks per core, which keeps the core busy while one starts or hands its rows on.
        cpu_stage_num_cpus: CPUs per task of highlight when it runs after a segment actor.
        encode_latents: Also store VAE latents and text embeddings (training skips the encoders).
        latent_preset: Preset whose VAE and text encoder make those latents.
        mlflow_tracking_uri: MLflow backend (e.g. sqlite:///mlflow.db); None skips MLflow.
        mlflow_experiment: Experiment of the curation run.
        retry_quarantined: Re-run sources quarantined with a retryable reason.
        sources_per_part: Consecutive sources whose rows make one part file of `data/` (and of
            `quarantine/`); 256 clips of 16 JPEG frames at 512 px make a part of about 200-400 MB.
            Fixed for an output directory once written.
        sources_per_block: Sources per Ray Data block, the unit a task takes: large enough that a
            task's fixed cost (~0.1 s on 2 cores) is small beside its sources, even cheap ones
            (bench/RESULTS.md). Small runs use fewer, so that every decode slot gets work.
        flush_interval_s: Finished rows of parts still open are made durable (in `_staging/`) at
            least this often, so a kill loses at most about this much finished work.
    """

    input: str
    output_dir: str
    run_id: str | None = None
    num_frames: int = 16
    stride: int = 8
    size: int = 512
    clip_span_frames: int = 32
    resize_policy: Literal["center_crop", "stretch"] = "stretch"
    seed: int = 42
    max_clips_per_source: int = 1
    shot_detector: Literal["content", "none"] = "content"
    shot_threshold: float = 27.0
    min_shot_frames: int = 15
    reference_candidates: int = 4
    references_per_clip: int = 4
    reference: Literal["shp", "raw_frame"] = "shp"
    min_source_side: int = 64
    supported_codecs: tuple[str, ...] | None = None
    default_subject_class: str = "person"
    human_classes: tuple[str, ...] = ("person", "human", "man", "woman", "face")
    head_scale: float = 1.8
    min_face_fraction: float = 0.1
    min_object_fraction: float = 0.1
    face_detector: BackendConfig = field(default_factory=lambda: BackendConfig("cascade"))
    object_detector: BackendConfig = field(default_factory=lambda: BackendConfig("center-grabcut"))
    segmenter: BackendConfig = field(default_factory=lambda: BackendConfig("grabcut"))
    detect: ActorPoolConfig = field(default_factory=ActorPoolConfig)
    segment: ActorPoolConfig = field(default_factory=ActorPoolConfig)
    latents: ActorPoolConfig = field(default_factory=ActorPoolConfig)
    decode_num_cpus: float = 0.5
    cpu_stage_num_cpus: float = 0.25
    encode_latents: bool = False
    latent_preset: str = "tiny"
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "videomaker-curation"
    retry_quarantined: bool = False
    sources_per_part: int = 256
    sources_per_block: int = 64
    flush_interval_s: float = 30.0

    def __post_init__(self):
        if self.resize_policy not in ("center_crop", "stretch"):
            raise ValueError(f"Invalid PreprocessConfig(resize_policy={self.resize_policy!r}): use 'center_crop' or 'stretch'.")
        if self.num_frames < 1 or self.stride < 1 or self.reference_candidates < 1:
            raise ValueError(
                f"Invalid PreprocessConfig(num_frames={self.num_frames}, stride={self.stride}, "
                f"reference_candidates={self.reference_candidates}): each must be >= 1."
            )
        if self.clip_span_frames < self.num_frames:
            raise ValueError(f"Invalid PreprocessConfig(clip_span_frames={self.clip_span_frames}): must be >= num_frames "
                             f"({self.num_frames}); use {self.num_frames} for one fixed window per clip.")
        if not 1 <= self.references_per_clip <= self.reference_candidates:
            raise ValueError(f"Invalid PreprocessConfig(references_per_clip={self.references_per_clip}): must be between 1 "
                             f"and reference_candidates ({self.reference_candidates}).")
        if self.reference not in ("shp", "raw_frame"):
            raise ValueError(f"Invalid PreprocessConfig(reference={self.reference!r}): use 'shp' or 'raw_frame'.")
        if self.shot_detector not in ("content", "none"):
            raise ValueError(f"Invalid PreprocessConfig(shot_detector={self.shot_detector!r}): use 'content' or 'none'.")
        for name in ("max_clips_per_source", "min_shot_frames", "sources_per_part", "sources_per_block"):
            if getattr(self, name) < 1:
                raise ValueError(f"Invalid PreprocessConfig({name}={getattr(self, name)}): must be >= 1.")
        if self.flush_interval_s <= 0:
            raise ValueError(f"Invalid PreprocessConfig(flush_interval_s={self.flush_interval_s}): must be > 0 seconds.")
        if self.size < 8 or self.size % 8:
            raise ValueError(f"Invalid PreprocessConfig(size={self.size}): must be a positive multiple of 8.")
        self.human_classes = tuple(self.human_classes)
        if self.supported_codecs is not None:
            self.supported_codecs = tuple(self.supported_codecs)
        if self.run_id is None:
            self.run_id = self.config_hash()

    def config_hash(self) -> str:
        """Digest of everything that shapes the output rows (not paths, run id or resources)."""
        shaping = {
            key: value
            for key, value in asdict(self).items()
            if key not in {"input", "output_dir", "run_id", "detect", "segment", "latents", "decode_num_cpus", "cpu_stage_num_cpus",
                           "mlflow_tracking_uri", "mlflow_experiment", "retry_quarantined",
                           "sources_per_part", "sources_per_block", "flush_interval_s"}
        }
        return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:16]
