"""Configuration of a training run; every default is the paper's recipe (docs/method.md, section 4)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from videomaker.girl import GIRLConfig
from videomaker.pisa import PISASwitches


@dataclass
class ReferenceAugmentation:
    """Reference-image augmentation (docs/method.md, section 4): flip, then a random affine with white fill."""

    enabled: bool = True
    flip_p: float = 0.5
    rotation_deg: float = 30.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.6, 1.2)


@dataclass
class TrainConfig:
    """Fine-tune AnimateDiff with PISA and the GIRL loss on Ray Train.

    Args:
        dataset: The preprocess job's output directory (its `data/` Parquet is read) or a Parquet path.
        storage_path: Where Ray Train keeps checkpoints; with `run_name` it is the resume key.
        run_name: Re-running with the same name and storage path resumes the run.
        preset: Model preset (`tiny` for tests, `paper` for the reproduction) or a preset directory.
        switches: PISA ablation switches (rows of the paper's Table 3): reference in cross-attention,
            reference in the motion modules, motion modules trained.
        loss: The loss; `girl: false` is the plain epsilon loss of the ablation row without GIRL.
        max_steps: Optimizer steps (150k humans, 100k objects in the paper).
        lr, weight_decay, max_grad_norm, warmup_steps: AdamW recipe; constant LR after warm-up.
        batch_size_per_worker: Clips per worker per micro-batch (1 in the paper).
        grad_accumulation: Micro-batches per optimizer step.
        mixed_precision: "bf16" (autocast), "fp16" (autocast and a grad scaler) or "no".
        gradient_checkpointing: Recompute UNet activations in backward to save memory.
        ema_decay: Keep an EMA of the trainable weights with this decay; None disables it.
        seed: Seeds noise, timesteps, dropout and augmentation per (step, rank, sample), and each
            draw's window and reference per (epoch, sample).
        shuffle: Visit part files, and rows within each part, in a seeded order per epoch; False
            keeps the Parquet order.
        use_latents: Train on the dataset's pre-encoded latents when it has them.
        augmentation: Reference augmentation.
        num_workers, use_gpu, cpus_per_worker: Ray Train `ScalingConfig`.
        checkpoint_every_steps, keep_checkpoints: Full-state checkpoints and how many to keep.
        max_failures: Worker-group restarts from the latest checkpoint before the run fails.
        on_nonfinite_loss: "stop" raises naming the step; "skip" drops the batch on every worker.
        log_every_steps: Metrics to Ray Train and MLflow every N steps.
        mlflow_tracking_uri, mlflow_experiment: MLflow from rank 0; None skips MLflow.
        validation_every_steps: Rank 0 generates validation videos every N steps and logs them
            (mp4 + GIF) as MLflow artifacts; None never does.
        validation_prompts, validation_reference, validation_inference_steps: What to generate
            (the reference is a path or `skimage:NAME`).
    """

    dataset: str
    storage_path: str
    run_name: str = "videomaker"
    preset: str = "tiny"
    switches: PISASwitches = field(default_factory=PISASwitches)
    loss: GIRLConfig = field(default_factory=GIRLConfig)
    max_steps: int = 150_000
    lr: float = 1e-5
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0
    warmup_steps: int = 0
    batch_size_per_worker: int = 1
    grad_accumulation: int = 1
    mixed_precision: Literal["bf16", "fp16", "no"] = "bf16"
    gradient_checkpointing: bool = True
    ema_decay: float | None = None
    seed: int = 42
    shuffle: bool = True
    use_latents: bool = True
    augmentation: ReferenceAugmentation = field(default_factory=ReferenceAugmentation)
    num_workers: int = 4
    use_gpu: bool = True
    cpus_per_worker: float = 1.0
    checkpoint_every_steps: int = 10_000
    keep_checkpoints: int = 3
    max_failures: int = 3
    on_nonfinite_loss: Literal["stop", "skip"] = "stop"
    log_every_steps: int = 10
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str = "videomaker-train"
    validation_every_steps: int | None = None
    validation_prompts: tuple[str, ...] = ("A person wearing a blue hoodie.",)
    validation_reference: str = "skimage:astronaut"
    validation_inference_steps: int = 30

    def __post_init__(self):
        if isinstance(self.switches, dict):
            self.switches = PISASwitches(**self.switches)
        if isinstance(self.loss, dict):
            self.loss = GIRLConfig(**self.loss)
        if isinstance(self.augmentation, dict):
            self.augmentation = ReferenceAugmentation(**self.augmentation)
        positive = ("max_steps", "batch_size_per_worker", "grad_accumulation", "num_workers", "checkpoint_every_steps",
                    "keep_checkpoints", "log_every_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"Invalid TrainConfig({name}={getattr(self, name)}): must be >= 1.")
        if self.mixed_precision not in ("bf16", "fp16", "no"):
            raise ValueError(f"Invalid TrainConfig(mixed_precision={self.mixed_precision!r}): use 'bf16', 'fp16' or 'no'.")
        if self.on_nonfinite_loss not in ("stop", "skip"):
            raise ValueError(f"Invalid TrainConfig(on_nonfinite_loss={self.on_nonfinite_loss!r}): use 'stop' or 'skip'.")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"Invalid TrainConfig(ema_decay={self.ema_decay}): must be in (0, 1) or None.")

    def as_params(self) -> dict[str, str]:
        """Flat `key.sub -> value` strings, for MLflow params."""
        def flatten(prefix: str, value) -> dict[str, str]:
            if dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            if isinstance(value, dict):
                return {k: v for key, sub in value.items() for k, v in flatten(f"{prefix}{key}.", sub).items()}
            return {prefix.rstrip("."): str(value)}

        return flatten("", self)
