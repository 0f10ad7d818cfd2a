"""The per-worker training loop Ray Train runs: batch, forward/backward under autocast, step, report.

Every random draw of a step (timesteps, noise, CFG dropout, reference augmentation) comes from a
generator seeded by (seed, step, rank, micro-batch), so a resumed run repeats exactly what an
uninterrupted one would have done.
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

from pipelines.training.config import TrainConfig
from pipelines.training.data import augment_reference, count_decode_failures
from pipelines.training.state import EMA, Progress, load_training_state, save_training_state

logger = logging.getLogger(__name__)


def step_seed(seed: int, step: int, rank: int, micro: int) -> int:
    digest = hashlib.sha256(f"{seed}/{step}/{rank}/{micro}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _to_training_batch(batch: dict, config: TrainConfig, generator: torch.Generator, use_latents: bool):
    from videomaker.training import TrainingBatch

    cpu_generator = torch.Generator().manual_seed(generator.initial_seed())
    reference = torch.stack([augment_reference(image, config.augmentation, cpu_generator) for image in batch["reference"]])
    reference = reference[:, None]  # (B, 1, 3, H, W)
    if use_latents:
        return TrainingBatch(video_latents=torch.from_numpy(batch["video_latents"]), reference=reference,
                             text_embeddings=torch.from_numpy(batch["text_embeddings"]))
    return TrainingBatch(frames=torch.from_numpy(batch["frames"]), reference=reference, captions=[str(c) for c in batch["caption"]])


def batch_draws(batch: dict, *, step: int, micro: int) -> list[dict]:
    """One record per sample of a batch: the window and reference its draw picked."""
    if "frame_indices" not in batch:
        return []
    return [{"step": step, "micro": micro, "epoch": int(epoch), "sample_id": str(sample), "frame_indices": [int(i) for i in frames],
             "reference_frame_index": int(reference)}
            for sample, epoch, frames, reference in zip(batch["sample_id"], batch["epoch"], batch["frame_indices"],
                                                       batch["reference_frame_index"])]


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
            f"Non-finite loss ({loss.item()}) at step {step} (rank {rank} or another worker); lower `lr`, use "
            f"mixed_precision='bf16', or set on_nonfinite_loss='skip' to drop such batches."
        )
    if skipped_in_a_row + 1 > MAX_CONSECUTIVE_SKIPS:
        raise FloatingPointError(
            f"Non-finite loss at step {step} for {MAX_CONSECUTIVE_SKIPS + 1} batches in a row; the weights are "
            f"broken, resume from an earlier checkpoint with a lower `lr`."
        )
    return True


class _MLflowLogger:
    """MLflow from rank 0: the config as params once, metrics per step, checkpoint locations as tags."""

    def __init__(self, config: TrainConfig, progress: Progress, data: dict | None = None):
        import mlflow

        self.mlflow = mlflow
        from pipelines.tracking import ensure_experiment

        experiment_id = ensure_experiment(config.mlflow_tracking_uri, config.mlflow_experiment, output_dir=config.storage_path)
        if progress.mlflow_run_id:  # a resumed run continues its MLflow run
            self.run = mlflow.start_run(run_id=progress.mlflow_run_id)
        else:
            self.run = mlflow.start_run(experiment_id=experiment_id, run_name=config.run_name)
            mlflow.set_tags({"videomaker.job": "train", "videomaker.run_name": config.run_name})
            mlflow.log_params({**config.as_params(), **{f"data.{k}": str(v) for k, v in (data or {}).items()}})
            progress.mlflow_run_id = self.run.info.run_id

    def metrics(self, values: dict, step: int) -> None:
        self.mlflow.log_metrics(values, step=step)

    def checkpoint(self, location: str, step: int) -> None:
        self.mlflow.set_tags({"checkpoint.latest": location, f"checkpoint.step_{step:08d}": location})

    def validation_videos(self, components, config: TrainConfig, step: int) -> None:
        """Generate the fixed validation prompts from the fixed reference and log mp4 + GIF."""
        from videomaker.export import write_gif, write_mp4
        from videomaker.pipeline import VideoMakerPipeline
        from videomaker.references import load_reference

        reference = load_reference(config.validation_reference, argument="validation_reference")
        prompts = list(config.validation_prompts)
        components.unet.eval()
        try:
            with torch.no_grad():
                output = VideoMakerPipeline(components, switches=config.switches)(
                    [reference] * len(prompts), prompts, seeds=[config.seed] * len(prompts),
                    num_inference_steps=config.validation_inference_steps, progress=False)
        finally:
            components.unet.train()
        with tempfile.TemporaryDirectory() as tmp:
            for index, frames in enumerate(output.frames):
                write_mp4(frames, Path(tmp) / f"{index:02d}.mp4")
                write_gif(frames, Path(tmp) / f"{index:02d}.gif")
            self.mlflow.log_artifacts(tmp, artifact_path=f"validation/step_{step:08d}")

    def close(self, status: str = "FINISHED") -> None:
        self.mlflow.end_run(status=status)


def train_loop_per_worker(loop_config: dict) -> None:
    """Ray Train entry point; `loop_config` holds the TrainConfig and the dataset facts."""
    import ray.train
    import ray.train.torch
    from torch.nn.parallel import DistributedDataParallel

    from dataclasses import asdict

    from videomaker.girl import girl_loss
    from videomaker.loading import load_components
    from videomaker.training import encode_batch, make_optimizer, prepare_for_training

    config: TrainConfig = loop_config["config"]
    use_latents: bool = loop_config["use_latents"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    torch.manual_seed(config.seed)

    components = load_components(config.preset, device=device)
    parameters = prepare_for_training(components, config.switches)
    named = {n: p for n, p in components.unet.named_parameters() if p.requires_grad}
    if config.gradient_checkpointing:
        components.unet.enable_gradient_checkpointing()
    model = DistributedDataParallel(components.unet) if world > 1 else components.unet
    optimizer = make_optimizer(parameters, lr=config.lr, weight_decay=config.weight_decay)
    warmup = config.warmup_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0)
    scaler = torch.amp.GradScaler(device.type, enabled=config.mixed_precision == "fp16")
    ema = EMA(named, config.ema_decay) if config.ema_decay else None
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.mixed_precision)

    progress = Progress()
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            progress = load_training_state(Path(directory), unet=components.unet, preset=config.preset, optimizer=optimizer,
                                           scheduler=scheduler, scaler=scaler, ema=ema)
        logger.info("rank %d resumed at step %d, batch %d", rank, progress.global_step, progress.batches_consumed)
    tracker = _MLflowLogger(config, progress, loop_config.get("data")) if rank == 0 and config.mlflow_tracking_uri else None
    girl = config.loss
    training_facts = {"loss": asdict(config.loss), "switches": asdict(config.switches), "data": loop_config.get("data", {}),
                      "seed": config.seed, "shuffle": config.shuffle}
    draws: list[dict] = []  # what this rank trained on since its last checkpoint
    shard = ray.train.get_dataset_shard("train")
    run_dir = f"{config.storage_path.rstrip('/')}/{config.run_name}"

    def report(metrics: dict, with_checkpoint: bool) -> None:
        if not with_checkpoint:
            ray.train.report(metrics)
            return
        name = f"checkpoint_{progress.global_step:08d}"
        with tempfile.TemporaryDirectory() as tmp:
            saved = None
            if rank == 0:
                save_training_state(Path(tmp), unet=components.unet, preset=config.preset, switches=config.switches,
                                    progress=progress, optimizer=optimizer, scheduler=scheduler, scaler=scaler, ema=ema,
                                    named_parameters=named, training=training_facts)
                saved = ray.train.Checkpoint.from_directory(tmp)
            write_draws(loop_config.get("run_dir", run_dir), rank, progress.global_step, draws)
            draws.clear()
            ray.train.report(metrics, checkpoint=saved, checkpoint_dir_name=name)
        if tracker is not None:
            tracker.checkpoint(f"{run_dir}/{name}", progress.global_step)

    totals = {"wait_s": 0.0, "started": time.perf_counter()}  # this attempt, from its first batch request
    micro, skipped_in_a_row, window = 0, 0, {"loss": [], "loss_video": [], "loss_reg": [], "wait_s": 0.0, "started": time.perf_counter()}
    try:
        batches = shard.iter_batches(batch_size=config.batch_size_per_worker, batch_format="numpy", drop_last=True,
                                     prefetch_batches=4)
        seen, fetch_started = 0, time.perf_counter()
        for batch in batches:
            seen += 1
            if seen <= progress.batches_consumed:  # resume: these were consumed before the checkpoint
                fetch_started = time.perf_counter()
                continue
            waited = time.perf_counter() - fetch_started
            window["wait_s"] += waited
            totals["wait_s"] += waited
            progress.batches_consumed = seen
            generator = torch.Generator(device=device).manual_seed(step_seed(config.seed, progress.global_step, rank, micro))
            training_batch = _to_training_batch(batch, config, generator, use_latents)
            draws += batch_draws(batch, step=progress.global_step + 1, micro=micro)
            video, reference, text = encode_batch(components, training_batch)
            last_micro = micro == config.grad_accumulation - 1
            sync = contextlib.nullcontext() if last_micro or world == 1 else model.no_sync()
            with sync:
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    out = girl_loss(model, components.scheduler, video, reference, text, generator=generator, config=girl)
                if should_skip_batch(out.loss, step=progress.global_step + 1, rank=rank, world_size=world,
                                     policy=config.on_nonfinite_loss, skipped_in_a_row=skipped_in_a_row):
                    optimizer.zero_grad(set_to_none=True)
                    progress.skipped_batches += 1
                    skipped_in_a_row += 1
                    micro = 0
                    fetch_started = time.perf_counter()
                    continue
                skipped_in_a_row = 0
                scaler.scale(out.loss / config.grad_accumulation).backward()
            for key in ("loss", "loss_video", "loss_reg"):
                window[key].append(getattr(out, key).item())
            micro += 1
            if not last_micro:
                fetch_started = time.perf_counter()
                continue
            micro = 0
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.max_grad_norm).item()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(named)
            progress.global_step += 1

            step = progress.global_step
            should_log = step % config.log_every_steps == 0 or step == config.max_steps
            should_save = step % config.checkpoint_every_steps == 0 or step == config.max_steps
            if should_log or should_save:
                elapsed = time.perf_counter() - window["started"]
                steps_in_window = len(window["loss"]) / config.grad_accumulation
                metrics = {
                    "step": step,
                    "loss": float(np.mean(window["loss"])),
                    "loss_video": float(np.mean(window["loss_video"])),
                    "loss_reg": float(np.mean(window["loss_reg"])),
                    "last_loss": window["loss"][-1],
                    "lr": scheduler.get_last_lr()[0],
                    "grad_norm": grad_norm,
                    "samples_per_s": steps_in_window * config.batch_size_per_worker * config.grad_accumulation * world / elapsed,
                    "step_time_s": elapsed / steps_in_window,
                    "data_wait_share": window["wait_s"] / elapsed,
                    "data_wait_share_total": totals["wait_s"] / (time.perf_counter() - totals["started"]),
                    "skipped_batches": progress.skipped_batches,
                    "decode_failures": count_decode_failures(loop_config["failures_dir"]),
                }
                if tracker is not None:
                    tracker.metrics({k: v for k, v in metrics.items() if k != "step"}, step)
                report(metrics, with_checkpoint=should_save)
                window = {"loss": [], "loss_video": [], "loss_reg": [], "wait_s": 0.0, "started": time.perf_counter()}
            if tracker is not None and config.validation_every_steps and step % config.validation_every_steps == 0:
                tracker.validation_videos(components, config, step)
                window["started"] = time.perf_counter()  # generation time is not training throughput
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
