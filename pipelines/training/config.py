"""Configuration of a training run, in groups; every default is the paper's recipe (docs/method.md, section 4).

videomaker train --print-config=keys     # every key with its type, default and documentation
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from videomaker.girl import GIRLConfig
from videomaker.pisa import PISASwitches

MixedPrecision = Literal["bf16", "fp16", "no"]


def _at_least_one(group: str, config: object, names: tuple[str, ...]) -> None:
    """Refuse a count below 1, naming its dotted key (`group` is "" at the top level)."""
    for name in names:
        if getattr(config, name) < 1:
            raise ValueError(f"Invalid `{group + '.' if group else ''}{name}` ({getattr(config, name)}): must be >= 1.")


@dataclass
class ReferenceAugmentation:
    """Reference-image augmentation (docs/method.md, section 4): flip, then a random affine with white fill.

    Args:
        enabled: Augment the reference at all; false feeds the stored reference as it is.
        flip_p: Probability of a horizontal flip.
        rotation_deg: Rotation drawn uniformly in [-rotation_deg, rotation_deg] degrees.
        translate: Shift drawn up to this fraction of the image side, per axis.
        scale: (low, high) of the uniformly drawn zoom factor.
    """

    enabled: bool = True
    flip_p: float = 0.5
    rotation_deg: float = 30.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.6, 1.2)


@dataclass
class ModelConfig:
    """What is trained.

    Args:
        preset: Model preset (`tiny` for tests, `paper` for the reproduction) or a preset directory.
        switches: PISA ablation switches (rows of the paper's Table 3): reference in cross-attention,
            reference in the motion modules, motion modules trained.
    """

    preset: str = "tiny"
    switches: PISASwitches = field(default_factory=PISASwitches)


@dataclass
class DataConfig:
    """How the preprocessed dataset is fed to the workers.

    Args:
        batch_size_per_worker: Clips per worker per micro-batch (1 in the paper).
        use_latents: Train on the dataset's pre-encoded latents when it has them.
        shuffle: Visit part files, and rows within each part, in a seeded order per epoch; false
            keeps the Parquet order.
        augmentation: Reference augmentation.
    """

    batch_size_per_worker: int = 1
    use_latents: bool = True
    shuffle: bool = True
    augmentation: ReferenceAugmentation = field(default_factory=ReferenceAugmentation)

    def __post_init__(self):
        _at_least_one("data", self, ("batch_size_per_worker",))


@dataclass
class OptimizerConfig:
    """AdamW and what an optimizer step does.

    Args:
        lr: Learning rate after warm-up (constant).
        weight_decay: AdamW weight decay.
        max_grad_norm: Gradients are clipped to this global norm before each step.
        warmup_steps: The learning rate rises linearly over this many steps; 0 starts at `lr`.
        grad_accumulation: Micro-batches per optimizer step.
        ema_decay: Keep an EMA of the trainable weights with this decay (saved under `ema/` in each
            checkpoint); null disables it.
        on_nonfinite_loss: `stop` raises naming the step; `skip` drops the batch on every worker.
    """

    lr: float = 1e-5
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    warmup_steps: int = 0
    grad_accumulation: int = 1
    ema_decay: float | None = None
    on_nonfinite_loss: Literal["stop", "skip"] = "stop"

    def __post_init__(self):
        _at_least_one("optimizer", self, ("grad_accumulation",))
        if self.warmup_steps < 0:
            raise ValueError(f"Invalid `optimizer.warmup_steps` ({self.warmup_steps}): must be >= 0.")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"Invalid `optimizer.ema_decay` ({self.ema_decay}): must be in (0, 1) or null.")


@dataclass
class PrecisionConfig:
    """Numerics and memory of the forward and backward passes.

    Args:
        mixed_precision: `bf16` (autocast), `fp16` (autocast and a grad scaler) or `no` (float32);
            quote it in YAML (`"no"`), which otherwise reads a bare no as false.
        gradient_checkpointing: Recompute UNet activations in backward to save memory.
    """

    mixed_precision: MixedPrecision = "bf16"
    gradient_checkpointing: bool = True


@dataclass
class CheckpointConfig:
    """Full-state checkpoints under `<storage_path>/<run_name>/` and restarts from them.

    Args:
        every_steps: A checkpoint every N optimizer steps (and at the last step).
        keep: How many checkpoints to keep (the latest ones).
        max_failures: Worker-group restarts from the latest checkpoint before the run fails (-1: no limit).
    """

    every_steps: int = 10_000
    keep: int = 3
    max_failures: int = 3

    def __post_init__(self):
        _at_least_one("checkpoints", self, ("every_steps", "keep"))


@dataclass
class TrackingConfig:
    """Metrics to Ray Train and MLflow.

    Args:
        log_every_steps: Metrics to Ray Train and MLflow every N steps (and at the last step).
        mlflow_tracking_uri: MLflow from rank 0 (e.g. sqlite:///mlflow.db); null skips MLflow.
        mlflow_experiment: Experiment of the training run.
        registered_model: Register checkpoints as versions of this MLflow registered model (weights,
            metadata and config as the version's artifacts; `models:/NAME/VERSION` loads them); null
            registers none.
        register_checkpoints: `every` checkpoint written, or only the `final` one (at `max_steps`).
    """

    log_every_steps: int = 10
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "videomaker-train"
    registered_model: str | None = None
    register_checkpoints: str = "every"

    def __post_init__(self):
        _at_least_one("tracking", self, ("log_every_steps",))
        if self.register_checkpoints not in ("every", "final"):
            raise ValueError(f"`tracking.register_checkpoints` is {self.register_checkpoints!r}; expected `every` or `final`.")
        if self.registered_model is not None and not self.mlflow_tracking_uri:
            raise ValueError("`tracking.registered_model` needs `tracking.mlflow_tracking_uri`: versions live in MLflow's Model Registry.")


@dataclass
class ValidationConfig:
    """Validation videos rank 0 generates during training and logs to MLflow (mp4 + GIF).

    Args:
        every_steps: Generate every N steps; null never does (nor without MLflow).
        prompts: One video per prompt.
        reference: The reference image: a path or `skimage:NAME`.
        inference_steps: Denoising steps per video.
    """

    every_steps: int | None = None
    prompts: tuple[str, ...] = ("A person wearing a blue hoodie.",)
    reference: str = "skimage:astronaut"
    inference_steps: int = 30

    def __post_init__(self):
        _at_least_one("validation", self, ("inference_steps",))
        if self.every_steps is not None and self.every_steps < 1:
            raise ValueError(f"Invalid `validation.every_steps` ({self.every_steps}): must be >= 1 or null.")


@dataclass
class ResourcesConfig:
    """Ray Train's `ScalingConfig`.

    Args:
        num_workers: Training workers (one GPU each with `use_gpu`).
        use_gpu: Train on GPUs; false trains on CPU workers (tests, demo).
        cpus_per_worker: CPUs reserved per worker.
    """

    num_workers: int = 4
    use_gpu: bool = True
    cpus_per_worker: float = 1.0

    def __post_init__(self):
        _at_least_one("resources", self, ("num_workers",))


@dataclass
class TrainConfig:
    """Fine-tune AnimateDiff with PISA and the GIRL loss on Ray Train.

    Args:
        dataset: The preprocess job's output directory (its `data/` Parquet is read) or a Parquet path.
        storage_path: Where Ray Train keeps checkpoints; with `run_name` it is the resume key.
        run_name: Re-running with the same name and storage path resumes the run.
        max_steps: Optimizer steps (150k humans, 100k objects in the paper).
        seed: Seeds noise, timesteps, dropout and augmentation per (step, rank, micro-batch), and each
            draw's window and reference per (epoch, sample).
        model: The preset and the PISA switches.
        loss: The loss; `girl: false` is the plain epsilon loss of the ablation row without GIRL.
        data: Batch size, latents, shuffling and reference augmentation.
        optimizer: AdamW recipe, warm-up, gradient accumulation, EMA and the non-finite loss policy.
        precision: Mixed precision and gradient checkpointing.
        checkpoints: How often checkpoints are written, how many are kept, restarts.
        tracking: Metrics and MLflow.
        validation: Validation videos logged to MLflow.
        resources: Workers, GPUs and CPUs.
    """

    dataset: str
    storage_path: str
    run_name: str = "videomaker"
    max_steps: int = 150_000
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: GIRLConfig = field(default_factory=GIRLConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    checkpoints: CheckpointConfig = field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)

    def __post_init__(self):
        _at_least_one("", self, ("max_steps",))

    @property
    def run_dir(self) -> str:
        """`<storage_path>/<run_name>`: checkpoints, draws, decode failures and the resolved config."""
        return f"{self.storage_path.rstrip('/')}/{self.run_name}"
