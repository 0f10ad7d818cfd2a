"""Full training state in a checkpoint directory.

A checkpoint is a loadable VideoMaker checkpoint (`trainable.safetensors`, `videomaker.json`,
`ema/` when EMA is on), the run's resolved `config.yaml`, plus `training_state.pt`: optimizer, grad
scaler, EMA, RNG states, global step and data position, everything a resumed run needs to continue
exactly (the learning rate is a function of the step: `videomaker.training.lr_at`).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from videomaker.checkpoint import save_checkpoint
from videomaker.training import EMA

if TYPE_CHECKING:
    from videomaker.pisa import PISASwitches

STATE_FILE = "training_state.pt"
CONFIG_FILE = "config.yaml"


@dataclass
class Progress:
    """Where the run is: optimizer steps done and the data position (micro-batches consumed)."""

    global_step: int = 0
    batches_consumed: int = 0
    skipped_batches: int = 0
    mlflow_run_id: str | None = None


def save_training_state(
    directory: Path,
    *,
    unet: torch.nn.Module,
    preset: str,
    switches: PISASwitches,
    progress: Progress,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    ema: EMA | None,
    named_parameters: dict[str, torch.nn.Parameter],
    training: dict | None = None,
    config_yaml: str | None = None,
) -> None:
    """Weights, optimizer, scaler, RNG and progress; `training` (loss switches, data facts) goes into
    the checkpoint metadata so an evaluation knows what the weights were trained with, and
    `config_yaml` (the run's resolved config) into `config.yaml`."""
    extra = {"progress": asdict(progress), "training": training or {}}
    save_checkpoint(directory, unet, preset=preset, switches=switches, global_step=progress.global_step, extra=extra)
    if ema is not None:
        with _swapped_in(named_parameters, ema.shadow):
            save_checkpoint(
                directory / "ema",
                unet,
                preset=preset,
                switches=switches,
                global_step=progress.global_step,
                extra={"ema_decay": ema.decay, "training": training or {}},
            )
    state = {
        "progress": asdict(progress),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "ema": ema.shadow if ema is not None else None,
        "rng": {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        },
    }
    torch.save(state, directory / STATE_FILE)
    if config_yaml is not None:
        (directory / CONFIG_FILE).write_text(config_yaml)


def load_training_state(
    directory: Path, *, unet: torch.nn.Module, preset: str, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, ema: EMA | None
) -> Progress:
    """Restore everything `save_training_state` wrote; returns the progress to continue from.

    A checkpoint of an older version also holds an LR scheduler state; it is not needed (the
    learning rate follows from the step) and is ignored."""
    from videomaker.checkpoint import load_checkpoint

    load_checkpoint(directory).apply_to(unet, preset=preset)
    state = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    scaler.load_state_dict(state["scaler"])
    if ema is not None and state["ema"] is not None:
        ema.shadow = {name: tensor.to(next(iter(ema.shadow.values())).device) for name, tensor in state["ema"].items()}
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return Progress(**state["progress"])


class _swapped_in:
    """Temporarily copy `values` into the parameters (to save the EMA weights as a checkpoint)."""

    def __init__(self, named_parameters: dict[str, torch.nn.Parameter], values: dict[str, torch.Tensor]):
        self.parameters, self.values = named_parameters, values

    def __enter__(self):
        self.saved = {name: p.detach().clone() for name, p in self.parameters.items()}
        with torch.no_grad():
            for name, parameter in self.parameters.items():
                parameter.copy_(self.values[name])

    def __exit__(self, *exc):
        with torch.no_grad():
            for name, parameter in self.parameters.items():
                parameter.copy_(self.saved[name])
