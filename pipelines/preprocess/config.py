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
    """Subject Highlight Preprocessing (SPEC section 5) of a video corpus.

    Args:
        input: Manifest (CSV, JSONL or Parquet with `path`, `caption`, optional `subject_class`,
            `source_id`) or a directory of videos; local paths or URIs pyarrow can open.
        output_dir: Where `data/`, `quarantine/`, markers and `summary.json` go.
        run_id: Recorded in every row; default: a hash of the config.
        num_frames: Frames per clip.
        stride: Frame stride of a clip; shorter videos fall back to n_frames // num_frames.
        size: Output frames are size x size pixels.
        resize_policy: `center_crop` keeps the aspect ratio, `stretch` does not.
        seed: Mixed with each sample id for clip starts and reference candidates.
        reference_candidates: Candidate reference frames per clip.
        min_source_side: Videos whose short side is smaller are quarantined as too_small.
        supported_codecs: FFmpeg codec names accepted (e.g. [h264, hevc, vp9]); others are
            quarantined as unsupported_codec. None accepts whatever FFmpeg decodes.
        default_subject_class: For manifest rows without `subject_class`.
        human_classes: Classes handled as humans (face detection); the rest are objects.
        head_scale: Face box enlarged by this factor (and shifted up) to cover the head.
        min_face_fraction: A face narrower than this share of the frame's short side is too small.
        face_detector, object_detector, segmenter: Backends by registry name and options.
        detect, segment, latents: Actor pools of the stages whose backends load models; weight-free
            detection and segmentation run inside the decode tasks instead.
        decode_num_cpus: CPUs per decode task (probe to decode, and the weight-free stages); its
            libraries get max(1, floor(decode_num_cpus)) threads. 0.5 runs two single-threaded
            tasks per core, which keeps the core busy while one starts or hands its rows on.
        cpu_stage_num_cpus: CPUs per task of the writer (and highlight after a segment actor).
        encode_latents: Also store VAE latents and text embeddings (training skips the encoders).
        latent_preset: Preset whose VAE and text encoder make those latents.
        mlflow_tracking_uri: MLflow backend (e.g. sqlite:///mlflow.db); None skips MLflow.
        mlflow_experiment: Experiment of the curation run.
        retry_quarantined: Re-run sources quarantined with a retryable reason.
    """

    input: str
    output_dir: str
    run_id: str | None = None
    num_frames: int = 16
    stride: int = 8
    size: int = 512
    resize_policy: Literal["center_crop", "stretch"] = "center_crop"
    seed: int = 42
    reference_candidates: int = 4
    min_source_side: int = 64
    supported_codecs: tuple[str, ...] | None = None
    default_subject_class: str = "person"
    human_classes: tuple[str, ...] = ("person", "human", "man", "woman", "face")
    head_scale: float = 1.8
    min_face_fraction: float = 0.1
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

    def __post_init__(self):
        if self.resize_policy not in ("center_crop", "stretch"):
            raise ValueError(f"Invalid PreprocessConfig(resize_policy={self.resize_policy!r}): use 'center_crop' or 'stretch'.")
        if self.num_frames < 1 or self.stride < 1 or self.reference_candidates < 1:
            raise ValueError(
                f"Invalid PreprocessConfig(num_frames={self.num_frames}, stride={self.stride}, "
                f"reference_candidates={self.reference_candidates}): each must be >= 1."
            )
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
                           "mlflow_tracking_uri", "mlflow_experiment", "retry_quarantined"}
        }
        return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:16]
