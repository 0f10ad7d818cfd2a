"""Build and run the Ray Train `TorchTrainer` of a `TrainConfig`.

Re-running with the same `run_name` and `storage_path` resumes from the latest checkpoint (Ray
Train V2 restores it into `ray.train.get_checkpoint()`); a failed worker group is restarted from
it up to `checkpoints.max_failures` times. The resolved config is written to
`<storage_path>/<run_name>/config.yaml` before the workers start.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pipelines.cluster import connect_or_start_ray
from pipelines.configs import write_resolved
from pipelines.training.config import TrainConfig
from pipelines.training.data import dataset_facts, dataset_lineage, dataset_path, has_latents, parquet_parts, training_dataset
from pipelines.training.loop import train_loop_per_worker
from videomaker import storage

if TYPE_CHECKING:
    import ray.train


def run_training(config: TrainConfig) -> ray.train.Result:
    """Train; returns Ray Train's `Result` (metrics of the last report, latest checkpoint)."""
    from ray.data import ExecutionOptions
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage.check_access(config.dataset, argument="`dataset`")
    storage.check_access(config.storage_path, argument="`storage_path`", write=True)
    path = dataset_path(config.dataset)
    if not storage.exists(path):
        raise FileNotFoundError(f"`dataset` {config.dataset!r} has no Parquet at {path!r}; run `videomaker preprocess` first.")
    connect_or_start_ray()
    use_latents = config.data.use_latents and has_latents(path, config.model.preset)
    parts = parquet_parts(path)
    rows = parts[2]
    resources = config.resources
    samples = config.max_steps * config.data.batch_size_per_worker * config.optimizer.grad_accumulation * resources.num_workers
    epochs = math.ceil(samples / max(rows, 1)) + 1  # one spare epoch covers dropped samples and skipped batches
    storage_path = storage.absolute(config.storage_path)
    run_dir = storage.join(storage_path, config.run_name)
    failures_dir = storage.join(run_dir, "decode_failures")
    write_resolved(config, run_dir)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "config": config,
            "use_latents": use_latents,
            "failures_dir": failures_dir,
            "data": dataset_facts(path),
            "lineage": dataset_lineage(config.dataset, path, parts),
            "run_dir": run_dir,
        },
        scaling_config=ScalingConfig(
            num_workers=resources.num_workers, use_gpu=resources.use_gpu, resources_per_worker={"CPU": resources.cpus_per_worker}
        ),
        run_config=RunConfig(
            name=config.run_name,
            storage_path=storage_path,
            checkpoint_config=CheckpointConfig(num_to_keep=config.checkpoints.keep),
            failure_config=FailureConfig(max_failures=config.checkpoints.max_failures),
        ),
        datasets={
            "train": training_dataset(
                config.dataset,
                epochs=epochs,
                use_latents=use_latents,
                failures_dir=failures_dir,
                seed=config.seed,
                shuffle=config.data.shuffle,
            )
        },
        # Batches in Parquet order: the data position in a checkpoint then means the same samples.
        dataset_config=DataConfig(execution_options=ExecutionOptions(preserve_order=True)),
    )
    return trainer.fit()
