"""The per-worker training loop Ray Train runs: only distribution around `videomaker.training`'s step.

The loop reads its data shard, calls `micro_step` per micro-batch (under DDP's `no_sync` until the
last one of a step) and `optimizer_step`, and reports metrics and checkpoints; MLflow goes through
`mlflow_logger.TrainingRunLogger`. Every random draw of a step (timesteps, noise, CFG dropout,
reference augmentation) comes from a generator seeded by (seed, step, rank, micro-batch), and the
learning rate is a function of the step, so a resumed run repeats exactly what an uninterrupted
one would have done.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pipelines.training.config import ReferenceAugmentation, TrainConfig
from pipelines.training.data import augment_reference, count_decode_failures
from pipelines.training.state import Progress, load_training_state, save_training_state

logger = logging.getLogger(__name__)


def step_seed(seed: int, step: int, rank: int, micro: int) -> int:
    """The seed of one micro-batch's draws: the same (seed, step, rank, micro) always draws the same."""
    digest = hashlib.sha256(f"{seed}/{step}/{rank}/{micro}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _to_training_batch(batch: dict, augmentation: ReferenceAugmentation, generator: torch.Generator, use_latents: bool):
    from videomaker.training import TrainingBatch

    cpu_generator = torch.Generator().manual_seed(generator.initial_seed())
    reference = torch.stack([augment_reference(image, augmentation, cpu_generator) for image in batch["reference"]])
    reference = reference[:, None]  # (B, 1, 3, H, W)
    if use_latents:
        return TrainingBatch(
            video_latents=torch.from_numpy(batch["video_latents"]),
            reference=reference,
            text_embeddings=torch.from_numpy(batch["text_embeddings"]),
        )
    return TrainingBatch(frames=torch.from_numpy(batch["frames"]), reference=reference, captions=[str(c) for c in batch["caption"]])


def batch_draws(batch: dict, *, step: int, micro: int) -> list[dict]:
    """One record per sample of a batch: the window and reference its draw picked."""
    if "frame_indices" not in batch:
        return []
    return [
        {
            "step": step,
            "micro": micro,
            "epoch": int(epoch),
            "sample_id": str(sample),
            "frame_indices": [int(i) for i in frames],
            "reference_frame_index": int(reference),
        }
        for sample, epoch, frames, reference in zip(
            batch["sample_id"], batch["epoch"], batch["frame_indices"], batch["reference_frame_index"]
        )
    ]


def write_draws(run_dir: str, rank: int, step: int, draws: list[dict]) -> None:
    """`<run>/draws/rank-RRRR/step-SSSSSSSS.jsonl`: what a rank trained on up to a checkpoint (a resumed
    run rewrites the same file with the same lines)."""
    import json

    from videomaker import storage

    fs, root = storage.resolve(storage.join(run_dir, "draws", f"rank-{rank:04d}"))
    fs.create_dir(root, recursive=True)
    with fs.open_output_stream(f"{root}/step-{step:08d}.jsonl") as stream:
        stream.write("".join(json.dumps(d) + "\n" for d in draws).encode())


MAX_CONSECUTIVE_SKIPS = 10  # beyond this the weights themselves are broken; skipping cannot help


def should_skip_batch(loss: torch.Tensor, *, step: int, rank: int, world_size: int, policy: str, skipped_in_a_row: int) -> bool:
    """True when any worker's loss is non-finite and `policy` is "skip"; raises for "stop".

    Every worker reaches the same verdict (the flag is all-reduced), so DDP stays in step.
    """
    flag = (~torch.isfinite(loss.detach())).float().reshape(1)
    if world_size > 1:
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    if not flag.item():
        return False
    if policy == "stop":
        raise FloatingPointError(
            f"Non-finite loss ({loss.item()}) at step {step} (rank {rank} or another worker); lower `optimizer.lr`, use "
            f"--set precision.mixed_precision=bf16, or --set optimizer.on_nonfinite_loss=skip to drop such batches."
        )
    if skipped_in_a_row + 1 > MAX_CONSECUTIVE_SKIPS:
        raise FloatingPointError(
            f"Non-finite loss at step {step} for {MAX_CONSECUTIVE_SKIPS + 1} batches in a row; the weights are "
            f"broken, resume from an earlier checkpoint with a lower `optimizer.lr`."
        )
    return True


class _Window:
    """Losses and timing since the last report: the figures of one metrics report."""

    def __init__(self):
        self.losses: dict[str, list[float]] = {"loss": [], "loss_video": [], "loss_reg": []}
        self.wait_s = 0.0
        self.started = time.perf_counter()

    def add(self, out) -> None:
        for key, values in self.losses.items():
            values.append(getattr(out, key).item())

    def metrics(self, config: TrainConfig, world: int) -> dict[str, float]:
        elapsed = time.perf_counter() - self.started
        steps = len(self.losses["loss"]) / config.optimizer.grad_accumulation
        return {
            **{key: float(np.mean(values)) for key, values in self.losses.items()},
            "last_loss": self.losses["loss"][-1],
            "samples_per_s": steps * config.data.batch_size_per_worker * config.optimizer.grad_accumulation * world / elapsed,
            "step_time_s": elapsed / steps,
            "data_wait_share": self.wait_s / elapsed,
        }


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train entry point; `loop_config` holds the TrainConfig and the dataset facts."""
    from dataclasses import asdict

    import ray.train
    import ray.train.torch
    from torch.nn.parallel import DistributedDataParallel

    from pipelines.configs import to_yaml
    from videomaker import training
    from videomaker.loading import load_components

    config: TrainConfig = loop_config["config"]
    optim = config.optimizer
    use_latents: bool = loop_config["use_latents"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(config.seed)

    components = load_components(config.model.preset, device=device)
    parameters = training.prepare_for_training(components, config.model.switches)
    named = {n: p for n, p in components.unet.named_parameters() if p.requires_grad}
    if config.precision.gradient_checkpointing:
        components.unet.enable_gradient_checkpointing()
    model = DistributedDataParallel(components.unet) if world > 1 else components.unet
    optimizer = training.make_optimizer(parameters, lr=optim.lr, weight_decay=optim.weight_decay)
    scaler = training.make_grad_scaler(device, config.precision.mixed_precision)
    ema = training.EMA(named, optim.ema_decay) if optim.ema_decay else None

    progress = Progress()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            progress = load_training_state(
                Path(directory), unet=components.unet, preset=config.model.preset, optimizer=optimizer, scaler=scaler, ema=ema
            )
        logger.info("rank %d resumed at step %d, batch %d", rank, progress.global_step, progress.batches_consumed)
    tracker = None
    if rank == 0 and config.tracking.mlflow_tracking_uri:
        from pipelines.training.mlflow_logger import TrainingRunLogger

        tracker = TrainingRunLogger(config, progress, loop_config.get("data"), loop_config.get("lineage"))
        # An attempt that died registering its checkpoint: the one resumed from is never written again.
        if checkpoint is not None and config.tracking.registered_model:
            with checkpoint.as_directory() as directory:
                step = progress.global_step
                tracker.register(Path(directory), f"checkpoint_{step:08d}", step, final=step >= config.max_steps)
    training_facts = {
        "loss": asdict(config.loss),
        "switches": asdict(config.model.switches),
        "data": loop_config.get("data", {}),
        "seed": config.seed,
        "shuffle": config.data.shuffle,
    }
    config_yaml = to_yaml(config)
    draws: list[dict] = []  # what this rank trained on since its last checkpoint
    shard = ray.train.get_dataset_shard("train")
    run_dir = loop_config.get("run_dir", config.run_dir)

    def report(metrics: dict, with_checkpoint: bool) -> None:
        if not with_checkpoint:
            ray.train.report(metrics)
            return
        name = f"checkpoint_{progress.global_step:08d}"
        with tempfile.TemporaryDirectory() as tmp:
            saved = None
            if rank == 0:
                save_training_state(
                    Path(tmp),
                    unet=components.unet,
                    preset=config.model.preset,
                    switches=config.model.switches,
                    progress=progress,
                    optimizer=optimizer,
                    scaler=scaler,
                    ema=ema,
                    named_parameters=named,
                    training=training_facts,
                    config_yaml=config_yaml,
                )
                saved = ray.train.Checkpoint.from_directory(tmp)
            write_draws(run_dir, rank, progress.global_step, draws)
            draws.clear()
            ray.train.report(metrics, checkpoint=saved, checkpoint_dir_name=name)
            if tracker is not None:  # rank 0: its copy of the checkpoint is still in `tmp`
                tracker.checkpoint(f"{config.run_dir}/{name}", progress.global_step)
                tracker.register(Path(tmp), name, progress.global_step, final=progress.global_step >= config.max_steps)

    def skip_nonfinite(loss: torch.Tensor) -> bool:
        return should_skip_batch(
            loss,
            step=progress.global_step + 1,
            rank=rank,
            world_size=world,
            policy=optim.on_nonfinite_loss,
            skipped_in_a_row=skipped_in_a_row,
        )

    totals = {"wait_s": 0.0, "started": time.perf_counter()}  # this attempt, from its first batch request
    micro, skipped_in_a_row, window = 0, 0, _Window()
    try:
        batches = shard.iter_batches(batch_size=config.data.batch_size_per_worker, batch_format="numpy", drop_last=True, prefetch_batches=4)
        seen, fetch_started = 0, time.perf_counter()
        for batch in batches:
            seen += 1
            if seen <= progress.batches_consumed:  # resume: these were consumed before the checkpoint
                fetch_started = time.perf_counter()
                continue
            waited = time.perf_counter() - fetch_started
            window.wait_s += waited
            totals["wait_s"] += waited
            progress.batches_consumed = seen
            generator = torch.Generator(device=device).manual_seed(step_seed(config.seed, progress.global_step, rank, micro))
            training_batch = _to_training_batch(batch, config.data.augmentation, generator, use_latents)
            draws += batch_draws(batch, step=progress.global_step + 1, micro=micro)
            last_micro = micro == optim.grad_accumulation - 1
            # DDP all-reduces gradients in backward; before the last micro-batch of a step there is nothing to reduce yet.
            with contextlib.nullcontext() if last_micro or world == 1 else model.no_sync():
                out = training.micro_step(
                    components,
                    training_batch,
                    model=model,
                    generator=generator,
                    config=config.loss,
                    mixed_precision=config.precision.mixed_precision,
                    scaler=scaler,
                    grad_accumulation=optim.grad_accumulation,
                    skip_batch=skip_nonfinite,
                )
            fetch_started = time.perf_counter()
            if out.skipped:  # the step starts over with the next batch
                progress.skipped_batches += 1
                skipped_in_a_row += 1
                micro = 0
                continue
            skipped_in_a_row = 0
            window.add(out.girl)
            micro += 1
            if not last_micro:
                continue
            micro = 0
            step = progress.global_step + 1
            lr = training.lr_at(step, lr=optim.lr, warmup_steps=optim.warmup_steps)
            grad_norm = training.optimizer_step(
                optimizer, max_grad_norm=optim.max_grad_norm, lr=lr, scaler=scaler, ema=ema, named_parameters=named
            )
            progress.global_step = step

            should_log = step % config.tracking.log_every_steps == 0 or step == config.max_steps
            should_save = step % config.checkpoints.every_steps == 0 or step == config.max_steps
            if should_log or should_save:
                metrics = {
                    "step": step,
                    **window.metrics(config, world),
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "data_wait_share_total": totals["wait_s"] / (time.perf_counter() - totals["started"]),
                    "skipped_batches": progress.skipped_batches,
                    "decode_failures": count_decode_failures(loop_config["failures_dir"]),
                }
                if tracker is not None:
                    tracker.metrics({k: v for k, v in metrics.items() if k != "step"}, step)
                report(metrics, with_checkpoint=should_save)
                window = _Window()
            if tracker is not None and config.validation.every_steps and step % config.validation.every_steps == 0:
                tracker.validation_videos(components, config, step)
                window.started = time.perf_counter()  # generation time is not training throughput
            if step >= config.max_steps:
                break
            fetch_started = time.perf_counter()
        if progress.global_step < config.max_steps:
            raise ValueError(
                f"`dataset` {config.dataset!r} ran out on rank {rank} at step {progress.global_step} of {config.max_steps} "
                f"after {seen} batches ({count_decode_failures(loop_config['failures_dir'])} samples failed to decode, "
                f"{progress.skipped_batches} batches skipped); check the preprocess output and decode_failures/."
            )
    except BaseException:
        if tracker is not None:
            tracker.close("FAILED")
        raise
    if tracker is not None:
        tracker.close()
